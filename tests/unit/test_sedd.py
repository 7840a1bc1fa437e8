"""The SEDD network and its loaders: published names and shapes, every checkpoint format, clear errors."""
import json

import pytest
import torch
import yaml
from safetensors.torch import save_file

from models.kernels import Absorbing, Uniform
from models.loaders import load_hf, load_project, load_run
from models.noise import LogLinear
from models.process import ForwardProcess
from models.sedd import SEDD, SEDDConfig, SEDDModel
from train.loop import EMA, export_weights

TINY = {"hidden_size": 32, "cond_dim": 16, "n_blocks": 2, "n_heads": 2, "scale_by_sigma": True, "dropout": 0.0}
PUBLISHED_CFG = {"tokens": 6, "graph": {"type": "absorb"}, "noise": {"type": "loglinear", "sigma_min": 1e-4, "sigma_max": 20},
                 "model": {**TINY, "name": "tiny", "type": "ddit", "length": 16}, "training": {"batch_size": 8}}


def tiny_net(seed=0):
    torch.manual_seed(seed)
    net = SEDD(SEDDConfig(vocab_size=7, **TINY))
    with torch.no_grad():  # the zero-initialized output layers would hide wrong weights
        for p in net.parameters():
            p.normal_(0, 0.2)
    return net.eval()


def outputs(net):
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 7, (3, 16), generator=g)
    sigma = torch.tensor([0.1, 1.0, 4.0])
    with torch.no_grad():
        return net(x, sigma), x


def test_published_sedd_small_names_shapes_and_size():
    with torch.device("meta"):
        net = SEDD(SEDDConfig(vocab_size=50258, hidden_size=768, cond_dim=128, n_blocks=12, n_heads=12))
    state = net.state_dict()
    block = ["norm1.weight", "attn_qkv.weight", "attn_out.weight", "norm2.weight", "mlp.0.weight", "mlp.0.bias",
             "mlp.2.weight", "mlp.2.bias", "adaLN_modulation.weight", "adaLN_modulation.bias"]
    expected = (["vocab_embed.embedding", "sigma_map.mlp.0.weight", "sigma_map.mlp.0.bias", "sigma_map.mlp.2.weight",
                 "sigma_map.mlp.2.bias", "rotary_emb.inv_freq"]
                + [f"blocks.{i}.{k}" for i in range(12) for k in block]
                + ["output_layer.norm_final.weight", "output_layer.linear.weight", "output_layer.linear.bias",
                   "output_layer.adaLN_modulation.weight", "output_layer.adaLN_modulation.bias"])
    assert sorted(state) == sorted(expected) and len(state) == 131
    assert sum(p.numel() for p in net.parameters()) == 169_627_218
    assert tuple(state["blocks.0.attn_qkv.weight"].shape) == (2304, 768)
    assert tuple(state["sigma_map.mlp.0.weight"].shape) == (128, 256)
    assert tuple(state["rotary_emb.inv_freq"].shape) == (32,)


def test_output_is_zero_at_the_input_token_and_scaled_by_sigma():
    net = tiny_net()
    out, x = outputs(net)
    assert torch.equal(out.gather(-1, x[..., None]), torch.zeros(3, 16, 1))
    net.config.scale_by_sigma = False
    raw, _ = outputs(net)
    shift = (torch.tensor([0.1, 1.0, 4.0]).exp() - 1).log() + torch.tensor(6.0).log()
    keep = torch.ones_like(out, dtype=torch.bool).scatter(-1, x[..., None], False)
    assert torch.allclose((raw - out)[keep].view(3, -1), shift[:, None].expand(3, 16 * 6), atol=1e-5)


@pytest.mark.parametrize("weights", ["pytorch_model.bin", "model.safetensors"])
def test_hugging_face_directory_loads_identically(tmp_path, weights):
    net = tiny_net()
    (tmp_path / "config.json").write_text(json.dumps(PUBLISHED_CFG))
    state = net.state_dict()
    if weights.endswith(".bin"):
        torch.save(state, tmp_path / weights)
    else:
        save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / weights)
    model = load_hf(tmp_path)
    assert torch.equal(outputs(model.net)[0], outputs(net)[0])
    assert isinstance(model.process.kernel, Absorbing) and model.process.num_states == 7


def test_training_run_loads_its_ema_weights(tmp_path):
    net, ema_net = tiny_net(0), tiny_net(1)
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text(yaml.safe_dump(PUBLISHED_CFG))
    (tmp_path / "checkpoints-meta").mkdir()
    ckpt = {"model": {f"module.{k}": v for k, v in net.state_dict().items()},
            "ema": {"decay": 0.9999, "num_updates": 10, "shadow_params": [p.detach().clone() for p in ema_net.parameters()]},
            "optimizer": {}, "step": 10}
    torch.save(ckpt, tmp_path / "checkpoints-meta" / "checkpoint.pth")
    model = load_run(tmp_path)
    assert torch.equal(outputs(model.net)[0], outputs(ema_net)[0])


def test_project_weights_round_trip(tmp_path):
    net = tiny_net()
    ema = EMA(net.parameters(), 0.5)
    spec = {"noise": {"name": "loglinear", "eps": 1e-3}, "kernel": {"name": "absorbing", "num_states": 6}}
    export_weights(net, ema, tmp_path, spec, "test", {"steps": 0})
    model = load_project(tmp_path)
    assert torch.equal(outputs(model.net)[0], outputs(net)[0])
    assert model.identity()["weights_sha256"]
    proc = ForwardProcess(LogLinear(), Absorbing(6))
    out = model(torch.full((2, 16), 6), torch.tensor([0.5, 0.9], dtype=torch.float64))
    assert out.kind == "score" and out.values.shape == (2, 16, 7) and proc.num_states == 7


def test_bad_checkpoints_fail_naming_the_problem(tmp_path):
    net = tiny_net()
    (tmp_path / "config.json").write_text(json.dumps(PUBLISHED_CFG))
    state = net.state_dict()
    state["blocks.0.attn_qkv.weights"] = state.pop("blocks.0.attn_qkv.weight")
    torch.save(state, tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"missing keys \['blocks.0.attn_qkv.weight'\].*unexpected keys \['blocks.0.attn_qkv.weights'\]"):
        load_hf(tmp_path)
    torch.save(net.state_dict(), tmp_path / "pytorch_model.bin")
    data = (tmp_path / "pytorch_model.bin").read_bytes()
    (tmp_path / "pytorch_model.bin").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="pytorch_model.bin.*truncated"):
        load_hf(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**PUBLISHED_CFG, "graph": {"type": "gaussian"}}))
    with pytest.raises(ValueError, match="unknown graph type 'gaussian'"):
        load_hf(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({**PUBLISHED_CFG, "noise": {"type": "cosine"}}))
    with pytest.raises(ValueError, match="unknown noise type 'cosine'"):
        load_hf(tmp_path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_hf(tmp_path / "nowhere")


def test_chunks_and_bf16_change_the_output_by_rounding_only(tmp_path):
    net = tiny_net()
    spec = {"noise": {"name": "loglinear", "eps": 1e-3}, "kernel": {"name": "absorbing", "num_states": 6}}
    export_weights(net, EMA(net.parameters(), 0.5), tmp_path, spec, "test", {"steps": 0})
    g = torch.Generator().manual_seed(2)
    x = torch.randint(0, 7, (10, 16), generator=g)
    t = torch.rand(10, generator=g, dtype=torch.float64)
    whole = load_project(tmp_path)(x, t).values
    chunked = load_project(tmp_path, chunk=3)(x, t).values
    assert torch.allclose(chunked, whole, atol=1e-5)
    half = load_project(tmp_path, precision="bf16", chunk=4)
    assert half.identity()["precision"] == "bf16"
    err = (half(x, t).values - whole).abs()
    assert 0 < err.max() < 0.1  # bfloat16 has 8 mantissa bits: visible, small
    with pytest.raises(ValueError, match="unknown precision 'fp16'"):
        load_project(tmp_path, precision="fp16")
    with pytest.raises(ValueError, match="chunk must be a positive"):
        load_project(tmp_path, chunk=0)


def test_scale_by_sigma_is_refused_for_a_uniform_graph(tmp_path):
    """Published SEDD asserts an absorbing graph when scale_by_sigma is set; the loaders refuse it too."""
    net = tiny_net()
    cfg = {**PUBLISHED_CFG, "tokens": 7, "graph": {"type": "uniform"}}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    torch.save(net.state_dict(), tmp_path / "pytorch_model.bin")
    with pytest.raises(ValueError, match=r"scale_by_sigma=true with the 'uniform' graph"):
        load_hf(tmp_path)
    with pytest.raises(ValueError, match=r"scale_by_sigma=true with the 'uniform' graph"):
        SEDDModel(net, ForwardProcess(LogLinear(), Uniform(7)))
    cfg["model"] = {**cfg["model"], "scale_by_sigma": False}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    model = load_hf(tmp_path)  # without the flag a uniform graph loads
    assert isinstance(model.process.kernel, Uniform) and not model.net.config.scale_by_sigma
