"""tauLDR's image model and its loaders: published names, shapes and size, the discretized logistic head
against its closed form, every checkpoint format, clear errors."""
import dataclasses
from pathlib import Path

import pytest
import torch
import yaml

from models.kernels import GaussianTarget
from models.noise import Exponential
from models.process import make_process
from models.tauldr import TauLDRImageNet, TauLDRModel, UNetConfig
from models.tauldr_loaders import (
    export_tauldr,
    load_tauldr_project,
    load_tauldr_run,
    process_spec_from_tauldr,
    unet_config_from_tauldr,
)
from pipeline.build import MODELS
from pipeline.experiment import Experiment

# The published CIFAR-10 training config (andrew-cr/tauLDR config/train/cifar10.py), as config_001.yaml holds it.
PUBLISHED_CIFAR = {
    "data": {"name": "DiscreteCIFAR10", "S": 256, "shape": [3, 32, 32], "batch_size": 128, "random_flips": True},
    "model": {"name": "GaussianTargetRateImageX0PredEMA", "ema_decay": 0.9999, "ch": 128, "num_res_blocks": 2,
              "num_scales": 4, "ch_mult": [1, 2, 2, 2], "input_channels": 3, "scale_count_to_put_attn": 1,
              "data_min_max": [0, 255], "dropout": 0.1, "skip_rescale": True, "time_embed_dim": 128,
              "time_scale_factor": 1000, "fix_logistic": False, "rate_sigma": 6.0, "Q_sigma": 512.0,
              "time_exponential": 100.0, "time_base": 3.0},
    "training": {"n_iters": 2000000}, "distributed": False,
}
# A tiny model of the same format: 2 channels of 8×8, S = 8, attention at the 4×4 scale.
TINY_MODEL = {**PUBLISHED_CIFAR["model"], "ch": 8, "num_res_blocks": 1, "num_scales": 2, "ch_mult": [1, 2],
              "input_channels": 2, "data_min_max": [0, 7], "dropout": 0.0, "time_embed_dim": 8,
              "rate_sigma": 1.5, "Q_sigma": 4.0}
TINY_CFG = {**PUBLISHED_CIFAR, "data": {**PUBLISHED_CIFAR["data"], "S": 8, "shape": [2, 8, 8]}, "model": TINY_MODEL}
TINY = unet_config_from_tauldr(TINY_CFG, Path("tiny"))
TINY_SPEC = process_spec_from_tauldr(TINY_CFG, Path("tiny"))


def tiny_net(seed=0, config=TINY):
    torch.manual_seed(seed)
    net = TauLDRImageNet(config)
    with torch.no_grad():  # the zero-initialized biases and attention outputs would hide wrong weights
        for p in net.parameters():
            p.normal_(0, 0.2)
    return net.eval()


def inputs(B=3):
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 8, (B, 128), generator=g), torch.tensor([0.01, 0.3, 1.0, 0.6, 0.05][:B])


def outputs(net):
    with torch.no_grad():
        return net(*inputs())


def write_run(d: Path, raw: TauLDRImageNet, ema: TauLDRImageNet, cfg=TINY_CFG, name="ckpt_0000000010.pt") -> Path:
    """A run directory as tauLDR's bookkeeping writes it, from a multi-GPU run (net.module.* keys)."""
    (d / "config").mkdir(parents=True, exist_ok=True)
    (d / "checkpoints").mkdir(exist_ok=True)
    (d / "config" / "config_001.yaml").write_text(yaml.dump(cfg))
    opt = torch.optim.Adam(raw.parameters(), lr=2e-4)
    raw(*inputs()).mean().backward()
    opt.step()  # a real optimizer state, so that weights_only loading is tried on what tauLDR saves
    model = {f"net.module.{k}": v for k, v in raw.state_dict().items()}
    model.update(ema_decay=0.9999, ema_num_updates=10, ema_shadow_params=[p.detach().clone() for p in ema.parameters()])
    path = d / "checkpoints" / name
    torch.save({"model": model, "optimizer": opt.state_dict(), "n_iter": 10}, path)
    return path


def test_published_cifar10_unet_names_shapes_and_size():
    with torch.device("meta"):
        net = TauLDRImageNet(unet_config_from_tauldr(PUBLISHED_CIFAR, Path("cifar10.yaml")))
    state = net.state_dict()
    # 35,749,766 parameters: tauLDR's own UNet class (lib/networks/networks.py), built with the values of
    # config/train/cifar10.py, has exactly this many (counted on the meta device); the "35.7M" of the reference.
    assert sum(p.numel() for p in net.parameters()) == 35_749_766
    assert len(state) == 328 and len(net.downsampling_modules) == 13 and len(net.upsampling_modules) == 18
    shapes = {"temb_modules.0.weight": (512, 128), "temb_modules.1.weight": (512, 512), "input_conv.weight": (128, 3, 3, 3),
              "downsampling_modules.0.groupnorm0.weight": (128,), "downsampling_modules.0.dense0.weight": (128, 512),
              "downsampling_modules.2.conv.weight": (128, 128, 3, 3), "downsampling_modules.3.nin.W": (128, 256),
              "downsampling_modules.4.NIN_3.W": (256, 256), "downsampling_modules.4.GroupNorm_0.bias": (256,),
              "middle_modules.1.NIN_0.b": (256,), "upsampling_modules.0.groupnorm0.weight": (512,),
              "upsampling_modules.0.nin.W": (512, 256), "upsampling_modules.3.conv.weight": (256, 256, 3, 3),
              "upsampling_modules.9.NIN_2.W": (256, 256), "upsampling_modules.17.conv1.weight": (128, 128, 3, 3),
              "output_modules.0.weight": (128,), "output_modules.1.weight": (6, 128, 3, 3)}
    assert {k: tuple(state[k].shape) for k in shapes} == shapes
    assert "downsampling_modules.0.nin.W" not in state  # no projection where channels do not change


@pytest.mark.parametrize("fix_logistic", [False, True])
def test_head_is_the_discretized_logistic_of_the_unet_output(fix_logistic):
    """exp(logit_k) = mass_k + 1e-6·σ(right edge) (tauLDR's log-minus-exp eps), mass_k = σ((c_k + w/2 − μ)/s)
    − σ((c_k − w/2 − μ)/s), s = e^{log_scale − 2}; fix_logistic uses min(σ(right), 1 − σ(left)) for the eps term."""
    config = UNetConfig(**{**TINY.to_dict(), "fix_logistic": fix_logistic})
    net = tiny_net(config=config)
    x, t = inputs()
    with torch.no_grad():
        logits = net(x, t)  # [B, L, S]
        out = net.unet(x.view(3, 2, 8, 8), t).double()  # [B, 2C, H, W]
    mu, scale = out[:, :2].reshape(3, 128, 1), torch.exp(out[:, 2:] - 2).reshape(3, 128, 1)
    centers = torch.linspace(-1 + 1 / 8, 1 - 1 / 8, 8, dtype=torch.float64)
    left, right = torch.sigmoid((centers - 1 / 8 - mu) / scale), torch.sigmoid((centers + 1 / 8 - mu) / scale)
    eps = torch.minimum(right, 1 - left) if fix_logistic else right
    assert logits.dtype == torch.float32 and logits.shape == (3, 128, 8)
    mass = right - left + 1e-6 * eps
    # 3e-7 separates the two eps terms (they differ by up to 1e-6); float32 rounding stays near 1.2e-7.
    assert torch.allclose(logits.double().exp(), mass, atol=3e-7, rtol=0)
    if fix_logistic:  # accurate in log space too, where the plain difference of CDFs near 1 cancels
        assert torch.allclose(logits.double(), mass.log(), atol=1e-4, rtol=0)
    # The residual: μ = tanh(x_centred + h), so a zero output convolution centres each pixel's law at tanh(x_centred).
    with torch.no_grad():
        net.output_modules[1].weight.zero_()
        net.output_modules[1].bias.zero_()
        mode = net(x, t).argmax(-1)
    expected = ((torch.tanh(2 * x.double() / 7 - 1) + 1) / 0.25).floor().clamp(0, 7).long()
    assert torch.equal(mode, expected)


def test_model_wrapper_gives_denoiser_probabilities_in_chunks():
    net = tiny_net()
    model = TauLDRModel(net, make_process(TINY_SPEC))
    x, t = inputs(5)
    out = model(x, t.double())
    assert out.kind == "denoiser" and out.values.shape == (5, 128, 8)
    assert torch.allclose(out.values.sum(-1), torch.ones(5, 128), atol=1e-5)
    with torch.no_grad():
        assert torch.equal(out.values, torch.softmax(net(x, t), -1))
    assert torch.allclose(TauLDRModel(net, make_process(TINY_SPEC), chunk=2)(x, t).values, out.values, atol=1e-6)
    with pytest.raises(ValueError, match="S = 8 states per token, but its process has 9"):
        TauLDRModel(net, make_process({**TINY_SPEC, "kernel": {**TINY_SPEC["kernel"], "num_states": 9}}))
    with pytest.raises(ValueError, match="sequences of length 100, expected C·H·W = 128"):
        model(x[:, :100], t)


def test_published_run_loads_its_ema_weights(tmp_path):
    raw, ema = tiny_net(0), tiny_net(1)
    write_run(tmp_path, raw, ema)
    model = load_tauldr_run(tmp_path)
    assert torch.equal(outputs(model.net), outputs(ema))
    assert not torch.allclose(outputs(model.net), outputs(raw))
    assert model.process.noise == Exponential(time_base=3.0, time_exponential=100.0)
    assert isinstance(model.process.kernel, GaussianTarget) and model.process.num_states == 8
    assert torch.equal(model.process.kernel.rate_matrix(), GaussianTarget(8, rate_sigma=1.5, Q_sigma=4.0).rate_matrix())
    assert model.identity()["format"] == "run" and len(model.identity()["weights_sha256"]) == 64
    # The brief layout: config.yaml and ckpt.pt at the top of the directory.
    flat = tmp_path / "flat"
    flat.mkdir()
    (flat / "config.yaml").write_text((tmp_path / "config" / "config_001.yaml").read_text())
    (flat / "ckpt.pt").write_bytes((tmp_path / "checkpoints" / "ckpt_0000000010.pt").read_bytes())
    assert torch.equal(outputs(load_tauldr_run(flat).net), outputs(ema))


@pytest.mark.slow
def test_bad_runs_fail_naming_the_problem(tmp_path):
    raw, ema = tiny_net(0), tiny_net(1)
    path = write_run(tmp_path, raw, ema)
    ckpt = torch.load(path, weights_only=True)
    state = ckpt["model"]
    state["net.module.input_conv.kernel"] = state.pop("net.module.input_conv.weight")
    torch.save(ckpt, path)
    with pytest.raises(ValueError, match=r"ckpt_0000000010.pt: .*missing keys \['net.input_conv.weight'\], "
                                         r"unexpected keys \['net.input_conv.kernel'\]"):
        load_tauldr_run(tmp_path)

    path = write_run(tmp_path, raw, ema)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="ckpt_0000000010.pt.*truncated"):
        load_tauldr_run(tmp_path)

    path = write_run(tmp_path, raw, ema, cfg={**TINY_CFG, "data": {**TINY_CFG["data"], "S": 16}})
    with pytest.raises(ValueError, match=r"config_001.yaml: .*data_min_max \[0, 7\] spans 8 pixel values but S = 16"):
        load_tauldr_run(tmp_path)

    write_run(tmp_path, raw, ema, cfg={**TINY_CFG, "model": {**TINY_MODEL, "name": "BirthDeathRateSequenceTransformerEMA"}})
    with pytest.raises(ValueError, match="config_001.yaml: model.name is 'BirthDeathRateSequenceTransformerEMA'"):
        load_tauldr_run(tmp_path)

    write_run(tmp_path, raw, tiny_net(1, UNetConfig(**{**TINY.to_dict(), "ch": 12})))
    with pytest.raises(ValueError, match=r"ema_shadow_params\[4\] \(for 'net.input_conv.weight'\) has shape \(12, 2, 3, 3\)"):
        load_tauldr_run(tmp_path)
    with pytest.raises(FileNotFoundError, match="neither config.yaml nor config/config_"):
        load_tauldr_run(tmp_path / "checkpoints")


def test_project_weights_round_trip(tmp_path):
    net = tiny_net()
    export_tauldr(net, TINY_SPEC, tmp_path / "w", {"steps": 0})
    model = load_tauldr_project(tmp_path / "w", chunk=2)
    assert torch.equal(outputs(model.net), outputs(net))
    x, t = inputs()
    assert torch.allclose(model(x, t).values, TauLDRModel(net, make_process(TINY_SPEC))(x, t).values, atol=1e-6)
    cfg = yaml.safe_load((tmp_path / "w" / "config.yaml").read_text())
    assert cfg["format"] == "jys-tauldr" and cfg["network"] == TINY.to_dict() and cfg["process"] == TINY_SPEC
    assert model.identity()["format"] == "project"


def test_bad_project_weights_fail_naming_the_problem(tmp_path):
    export_tauldr(tiny_net(), TINY_SPEC, tmp_path, {"steps": 0})
    cfg = yaml.safe_load((tmp_path / "config.yaml").read_text())
    wrong_s = {**cfg, "process": {**cfg["process"], "kernel": {**cfg["process"]["kernel"], "num_states": 9}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(wrong_s))
    with pytest.raises(ValueError, match="config.yaml: network.S is 8 but process.kernel.num_states is 9"):
        load_tauldr_project(tmp_path)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({**cfg, "network": {**cfg["network"], "heads": 4}}))
    with pytest.raises(ValueError, match="config.yaml: bad network section: .*'heads'"):
        load_tauldr_project(tmp_path)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    data = (tmp_path / "model.safetensors").read_bytes()
    (tmp_path / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="model.safetensors.*truncated"):
        load_tauldr_project(tmp_path)
    with pytest.raises(ValueError, match="export_tauldr: the network has S = 8 but the process has 9 states"):
        export_tauldr(tiny_net(), wrong_s["process"], tmp_path, {})


def test_pipeline_builds_tauldr_models_and_needs_a_path(make_cfg, tmp_path):
    cfg = make_cfg("experiment=chain_gauss", "model=tauldr-cifar")
    with pytest.raises(ValueError, match=r"model 'tauldr-cifar' \(kind 'tauldr'\) needs \['model.path'\]"):
        MODELS["tauldr"](cfg, None)  # the checkpoint is asked for before the experiment is read
    export_tauldr(tiny_net(), TINY_SPEC, tmp_path / "w", {"steps": 0})
    cfg = make_cfg("experiment=chain_gauss", "model=digits-tauldr", f"model.path={tmp_path / 'w'}", "device=cpu")
    spec = {"noise": TINY_SPEC["noise"], "kernel": TINY_SPEC["kernel"]}
    experiment = Experiment(name="tiny", length=4, prefix=0, chain=None, process=make_process(spec), data=None)
    model = MODELS["tauldr"](cfg, experiment)
    assert isinstance(model, TauLDRModel)
    other = make_process({**spec, "kernel": {**spec["kernel"], "Q_sigma": 8.0}})
    with pytest.raises(ValueError, match="another GaussianTarget kernel"):
        MODELS["tauldr"](cfg, dataclasses.replace(experiment, process=other))
