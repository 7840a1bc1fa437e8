"""The music experiment: conditional generation (exact conditional law with the oracle, prefixes never
moved, the KLUB over generated positions), tauLDR's sequence transformer and its loaders, the Hellinger
distance, the folk-tune grid, training with a prefix."""
import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch
import yaml

from conftest import S0, L, tiny_chain, tiny_process
from data.folk import REST, SkipTune, quantize
from jys.klub import Coarse, coarse_read, klub_terms
from metrics.music import hellinger, hellinger_to, histograms, mean_and_se, other_tune_hellinger
from models.kernels import Uniform
from models.noise import Constant
from models.oracle import OracleModel
from models.process import ForwardProcess
from models.protocol import ModelOutput
from models.tauldr_loaders import load_tauldr_project, load_tauldr_run, transformer_config_from_tauldr
from models.tauldr_sequence import TauLDRSequenceNet, TransformerConfig
from samplers.loop import run_sampler
from samplers.schedules import uniform
from train.loop import train

# The published piano training config (andrew-cr/tauLDR config/train/piano.py), as config_001.yaml holds it.
PUBLISHED_PIANO = {
    "data": {"name": "LakhPianoroll", "S": 129, "batch_size": 64, "shuffle": True, "shape": [256]},
    "model": {"name": "UniformRateSequenceTransformerEMA", "num_layers": 6, "d_model": 128, "num_heads": 8,
              "dim_feedforward": 2048, "dropout": 0.1, "temb_dim": 128, "num_output_FFresiduals": 2,
              "time_scale_factor": 1000, "use_one_hot_input": True, "ema_decay": 0.9999, "rate_const": 0.03},
    "loss": {"name": "ConditionalAux", "condition_dim": 32}, "distributed": False,
}
TINY_MODEL = {**PUBLISHED_PIANO["model"], "num_layers": 2, "d_model": 16, "num_heads": 2, "dim_feedforward": 24,
              "temb_dim": 8, "num_output_FFresiduals": 1, "dropout": 0.0}
TINY_CFG = {**PUBLISHED_PIANO, "data": {**PUBLISHED_PIANO["data"], "S": 7, "shape": [12]}, "model": TINY_MODEL}


# ------------------------------------------------------------------------------- conditional generation

@pytest.mark.parametrize("kernel,sampler", [("absorbing", "euler"), ("absorbing", "first_hitting"),
                                            ("uniform", "tau_leaping"), ("uniform", "tweedie"),
                                            ("gaussian", "tau_leaping")])
@pytest.mark.slow
def test_conditional_samples_follow_the_exact_conditional_law(kernel, sampler):
    """Prefix K = 1 held at a value per sample: the other L − 1 tokens follow p(x_{1:} | x_0) of the
    (floored) chain, by enumeration, and the prefix never changes."""
    proc = tiny_process(kernel)
    oracle = OracleModel(tiny_chain(), proc, floor=0.05, prefix=1)
    n = 6000
    prefix = torch.tensor([0, 2]).repeat_interleave(n // 2).unsqueeze(1)  # [n, 1]: two prefixes
    res = run_sampler(oracle, sampler, uniform(400, 1e-4), n, L, torch.Generator().manual_seed(3),
                      batch_size=n, progress=False, prefix=prefix)
    assert torch.equal(res.samples[:, :1], prefix)
    rest = list(itertools.product(range(S0), repeat=L - 1))
    index = {s: i for i, s in enumerate(rest)}
    for a in (0, 2):
        got = res.samples[prefix[:, 0] == a, 1:]
        counts = np.bincount([index[tuple(r)] for r in got.tolist()], minlength=len(rest))
        joint = np.exp(oracle.chain.log_prob(torch.tensor([(a, *r) for r in rest])).numpy())
        assert scipy.stats.chisquare(counts, joint / joint.sum() * len(got)).pvalue > 1e-3


def test_kgillespie_and_bad_prefixes_are_clear_errors():
    proc = tiny_process("absorbing")
    oracle = OracleModel(tiny_chain(), proc, floor=0.05, prefix=1)
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="kgillespie counts its grid over all L tokens.* not supported"):
        run_sampler(oracle, "kgillespie", uniform(4, 1e-4), 2, L, g, prefix=torch.zeros(2, 1, dtype=torch.long))
    with pytest.raises(ValueError, match=f"a prefix of {L} tokens: it must be shorter than the sequence"):
        run_sampler(oracle, "euler", uniform(4, 1e-4), 2, L, g, prefix=torch.zeros(2, L, dtype=torch.long))
    with pytest.raises(ValueError, match=r"prefix tokens in \[0, 3\], expected data states \[0, 3\)"):
        run_sampler(oracle, "euler", uniform(4, 1e-4), 2, L, g, prefix=torch.tensor([[0], [3]]))


def test_condition_prefix_not_shorter_than_the_sequence_fails_naming_it(make_cfg):
    from pipeline.experiment import Experiment

    assert Experiment.from_config(make_cfg("experiment=folk")).prefix == 32
    with pytest.raises(ValueError, match=r"experiment.condition.prefix=256: the prefix must lie in \[0, 256\)"):
        Experiment.from_config(make_cfg("experiment=folk", "experiment.condition.prefix=256"))


def test_klub_sums_the_generated_positions_only():
    """klub_terms with first = K equals the KLUB of the same reads cut to positions K.. (the prefix
    positions' rates, which the samplers never apply, count for nothing)."""
    proc = ForwardProcess(Constant(3.0), Uniform(S0))
    oracle = OracleModel(tiny_chain(), proc, floor=0.05, prefix=2)
    g = torch.Generator().manual_seed(0)
    x0 = tiny_chain().sample(64, 6, g)
    t1, t2 = torch.full((64,), 0.6, dtype=torch.float64), torch.full((64,), 0.4, dtype=torch.float64)
    x1, x2 = proc.sample_pair(x0, t1, t2, g)
    x1[:, :2], x2[:, :2] = x0[:, :2], x0[:, :2]
    coarse = coarse_read(oracle, x1, t1, 64)
    fine = oracle(x2, t2)
    with_prefix = klub_terms(proc, coarse, fine, x2, t2, "girsanov", "current", first=2)
    cut = klub_terms(proc, Coarse(x1[:, 2:], t1, coarse.log_ratio[:, 2:]),
                     ModelOutput(fine.kind, fine.values[:, 2:]), x2[:, 2:], t2, "girsanov", "current")
    whole = klub_terms(proc, coarse, fine, x2, t2, "girsanov", "current")
    assert torch.allclose(with_prefix, cut, rtol=1e-12) and not torch.allclose(with_prefix, whole)


# ------------------------------------------------------------------------------- tauLDR's transformer

def test_published_piano_transformer_names_shapes_and_size():
    with torch.device("meta"):
        net = TauLDRSequenceNet(transformer_config_from_tauldr(PUBLISHED_PIANO, Path("piano.yaml")))
    d, ff, S, temb = 128, 2048, 129, 4 * 128
    lin = lambda i, o: i * o + o  # noqa: E731
    layer = (4 * d * d + 4 * d) + lin(d, ff) + lin(ff, d) + 4 * d + lin(temb, 2 * d)
    resid = lin(d, ff) + lin(ff, d) + 2 * d + lin(temb, 2 * d)
    by_hand = 6 * layer + 2 * resid + lin(d, S) + lin(S, d) + lin(128, ff) + lin(ff, temb)
    # 7,008,769: the published config's layers counted by hand above, and by the meta-device build.
    assert sum(p.numel() for p in net.parameters()) == by_hand == 7_008_769
    state = net.state_dict()
    assert len(state) == 6 * 14 + 2 * 8 + 2 + 2 + 4
    shapes = {"encoder_layers.0.self_attn.in_proj_weight": (384, 128), "encoder_layers.5.film_from_temb.weight": (256, 512),
              "output_resid_layers.1.linear1.weight": (2048, 128), "output_resid_layers.0.norm.bias": (128,),
              "output_linear.weight": (129, 128), "input_embedding.weight": (128, 129),
              "temb_net.0.weight": (2048, 128), "temb_net.2.weight": (512, 2048)}
    for key, shape in shapes.items():
        assert tuple(state[key].shape) == shape, key
    assert net.config.long_times  # published checkpoints: t.long(), as tauLDR's wrapper calls the net
    # parameters() order = tauLDR's TransformerEncoder registration order (its EMA shadow list follows it):
    # per layer self_attn, linear1, linear2, norm1, norm2, film_from_temb; then the residual blocks, the
    # output layer, the input embedding, the time net. norm1 and norm2 share shapes: only order tells them apart.
    layer = ["self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight", "self_attn.out_proj.bias",
             "linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias", "norm1.weight", "norm1.bias",
             "norm2.weight", "norm2.bias", "film_from_temb.weight", "film_from_temb.bias"]
    resid = ["linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias", "norm.weight", "norm.bias",
             "film_from_temb.weight", "film_from_temb.bias"]
    published = ([f"encoder_layers.{i}.{n}" for i in range(6) for n in layer]
                 + [f"output_resid_layers.{i}.{n}" for i in range(2) for n in resid]
                 + ["output_linear.weight", "output_linear.bias", "input_embedding.weight", "input_embedding.bias",
                    "temb_net.0.weight", "temb_net.0.bias", "temb_net.2.weight", "temb_net.2.bias"])
    assert [n for n, _ in net.named_parameters()] == published


def tiny_seq_net(seed=0, **over):
    torch.manual_seed(seed)
    net = TauLDRSequenceNet(TransformerConfig(**{**transformer_config_from_tauldr(TINY_CFG, Path("t")).to_dict(), **over}))
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.3)
    return net.eval()


def seq_inputs():
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 7, (3, 12), generator=g), torch.tensor([0.01, 0.5, 0.99])


def test_long_times_flag_truncates_t_to_zero_exactly():
    x, t = seq_inputs()
    on, off = tiny_seq_net(long_times=True), tiny_seq_net(long_times=False)
    with torch.no_grad():
        assert torch.equal(on(x, t), off(x, torch.zeros(3)))  # every t in [0, 1) becomes 0
        assert torch.equal(on(x, t), on(x, torch.full((3,), 0.7)))
        assert not torch.allclose(off(x, t), off(x, torch.full((3,), 0.7)))


def write_seq_run(d: Path, raw, ema, cfg=TINY_CFG) -> Path:
    """A run directory as tauLDR's bookkeeping writes it (net.* keys, EMA shadow list)."""
    (d / "config").mkdir(parents=True, exist_ok=True)
    (d / "checkpoints").mkdir(exist_ok=True)
    (d / "config" / "config_001.yaml").write_text(yaml.dump(cfg))
    model = {f"net.{k}": v for k, v in raw.state_dict().items()}
    model.update(ema_decay=0.9999, ema_num_updates=10, ema_shadow_params=[p.detach().clone() for p in ema.parameters()])
    path = d / "checkpoints" / "ckpt_0000000010.pt"
    torch.save({"model": model, "optimizer": {}, "n_iter": 10}, path)
    return path


def test_published_sequence_checkpoint_loads_ema_weights_with_identical_outputs(tmp_path):
    raw, ema = tiny_seq_net(0, long_times=True), tiny_seq_net(1, long_times=True)
    write_seq_run(tmp_path, raw, ema)
    model = load_tauldr_run(tmp_path)
    assert isinstance(model.net, TauLDRSequenceNet) and model.net.config.long_times
    assert model.process.kernel.num_states == 7
    assert model.process.sigma(torch.tensor([1.0])).item() == pytest.approx(0.03 * 7)  # σ̄(1) = r·S
    x, t = seq_inputs()
    with torch.no_grad():
        assert torch.equal(model(x, t.double()).values, torch.softmax(ema(x, t), -1))
    # a checkpoint of another S fails on the shapes that S sets, naming the key
    write_seq_run(tmp_path, raw, ema, cfg={**TINY_CFG, "data": {**TINY_CFG["data"], "S": 9}})
    with pytest.raises(ValueError, match="output_linear.weight"):
        load_tauldr_run(tmp_path)


def test_project_sequence_weights_round_trip(tmp_path):
    from models.tauldr_loaders import export_tauldr

    net = tiny_seq_net(2, long_times=False)
    spec = {"noise": {"name": "constant", "value": 3.0}, "kernel": {"name": "uniform", "num_states": 7}}
    export_tauldr(net, spec, tmp_path, {"steps": 0})
    model = load_tauldr_project(tmp_path)
    x, t = seq_inputs()
    with torch.no_grad():
        assert torch.equal(model(x, t.double()).values, torch.softmax(net(x, t), -1))
    assert yaml.safe_load((tmp_path / "config.yaml").read_text())["architecture"] == "transformer"
    with pytest.raises(ValueError, match=r"states must lie in \[0, 7\), got \[0, 129\]"):
        model(torch.tensor([[0] * 11 + [129]]), t[:1].double())


# ------------------------------------------------------------------------------- Hellinger, folk grid

def test_hellinger_matches_hand_computation_and_its_bounds():
    p = torch.tensor([[0.5, 0.5, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64)
    q = torch.tensor([[0.25, 0.25, 0.5], [0.0, 0.0, 1.0]], dtype=torch.float64)
    hand = math.sqrt(2 * (math.sqrt(0.5) - 0.5) ** 2 + 0.5) / math.sqrt(2)
    assert hellinger(p, q).tolist() == pytest.approx([hand, 1.0])
    assert hellinger(p, p).tolist() == [0.0, 0.0]
    x = torch.tensor([[9, 0, 1, 1, 2], [9, 2, 2, 2, 2]])
    assert histograms(x[:, 1:], 3).tolist() == [[0.25, 0.5, 0.25], [0.0, 0.0, 1.0]]
    same = hellinger_to(x, x, 1, 10)
    assert same.tolist() == [0.0, 0.0]
    other = torch.tensor([[9, 0, 0, 0, 0], [8, 2, 2, 2, 2]])
    with pytest.raises(ValueError, match="row 1: the sample and its reference start from different prefixes"):
        hellinger_to(x, other, 1, 10)
    mean, se = mean_and_se(torch.tensor([0.1, 0.3, 0.5], dtype=torch.float64))
    assert (mean, se) == pytest.approx((0.3, 0.2 / math.sqrt(3)))
    d = torch.tensor([[0, 1, 1], [0, 2, 2], [0, 1, 2]])
    h = other_tune_hellinger(d, 1, 3, torch.Generator().manual_seed(0))
    assert (h > 0).all()  # never a tune against itself


def test_quantize_known_tune_and_skips():
    from music21 import chord, duration, note, stream

    s = stream.Stream()
    for el in (note.Note("C4", quarterLength=1), note.Note("D4", quarterLength=0.5), note.Rest(quarterLength=0.5),
               note.Note("E4", quarterLength=2)):
        s.append(el)
    grace = note.Note("G4")
    grace.duration = duration.GraceDuration("eighth")
    s.insert(1.0, grace)  # grace notes are dropped
    assert quantize(s).tolist() == [60] * 4 + [62] * 2 + [REST] * 2 + [64] * 8
    triplet = stream.Stream([note.Note("C4", quarterLength=1 / 3)])
    with pytest.raises(SkipTune, match="off_grid") as err:
        quantize(triplet)
    assert err.value.reason == "off_grid"
    with pytest.raises(SkipTune, match="chord"):
        quantize(stream.Stream([chord.Chord(["C4", "E4"], quarterLength=1)]))
    with pytest.raises(SkipTune, match="pitch_range"):
        quantize(stream.Stream([note.Note("C10", quarterLength=1)]))  # MIDI 132
    with pytest.raises(SkipTune, match="empty"):
        quantize(stream.Stream([note.Rest(quarterLength=1)]))


# ------------------------------------------------------------------------------- training with a prefix

def tiny_music_training(steps: int, **over):
    proc = ForwardProcess(Constant(3.0), Uniform(7))
    g = torch.Generator().manual_seed(0)
    base = torch.tensor([[0, 1, 2, 3, 4, 5, 6, 5, 4, 3, 2, 1], [6, 5, 4, 3, 2, 1, 0, 1, 2, 3, 4, 5]])
    data = base.repeat(16, 1)
    data = torch.where(torch.rand(data.shape, generator=g) < 0.05, 3, data)
    spec = {"noise": {"name": "constant", "value": 3.0}, "kernel": {"name": "uniform", "num_states": 7}}
    arch = {"network": "transformer", "length": 12, "num_layers": 1, "d_model": 16, "num_heads": 2,
            "dim_feedforward": 32, "dropout": 0.0, "num_output_FFresiduals": 1, "temb_dim": 8}
    settings = {"steps": steps, "batch_size": 16, "lr": 3e-3, "weight_decay": 0.0, "warmup": 1, "grad_clip": 1.0,
                "ema": 0.9, "t_min": 0.01, "seed": 0, "bf16": False, "log_every": 1, "ckpt_every": steps,
                "objective": "ct_elbo", "nll_weight": 0.001, "prefix": 2, **over}
    return data, proc, spec, arch, settings


def _generated_nll(directory, data, t: float) -> float:
    """−log p(x0 | x_t) per generated position (prefix clean, as in training), fixed draws."""
    model = load_tauldr_project(directory)
    tt = torch.full((len(data),), t, dtype=torch.float64)
    x_t = torch.cat([data[:, :2], model.process.sample(data[:, 2:], tt, torch.Generator().manual_seed(7))], 1)
    probs = model(x_t, tt).values.double()[:, 2:]
    return float(-probs.gather(-1, data[:, 2:].unsqueeze(-1)).clamp_min(1e-12).log().mean())


@pytest.mark.slow
def test_conditional_training_learns_and_resumes_bit_identically(tmp_path):
    data, proc, spec, arch, settings = tiny_music_training(60)
    train(data, proc, spec, arch, {**settings, "steps": 1, "ckpt_every": 1}, tmp_path / "w0", tmp_path / "c0", "t",
          progress=False)
    train(data, proc, spec, arch, settings, tmp_path / "w1", tmp_path / "c1", "t", progress=False)
    assert _generated_nll(tmp_path / "w1", data, 0.3) < 0.8 * _generated_nll(tmp_path / "w0", data, 0.3)
    data, proc, spec, arch, settings = tiny_music_training(4, ckpt_every=2)
    train(data, proc, spec, arch, settings, tmp_path / "w2", tmp_path / "c2", "t", progress=False)
    train(data, proc, spec, arch, {**settings, "steps": 2}, tmp_path / "w3", tmp_path / "c3", "t", progress=False)
    train(data, proc, spec, arch, settings, tmp_path / "w3", tmp_path / "c3", "t", progress=False)
    assert (tmp_path / "w2" / "model.safetensors").read_bytes() == (tmp_path / "w3" / "model.safetensors").read_bytes()
    assert json.loads((tmp_path / "w3" / "training.json").read_text())["steps"] == 4


def test_conditional_training_inputs_keep_the_prefix():
    from train.objectives import make_objective

    data, proc, spec, arch, settings = tiny_music_training(1)
    obj = make_objective("ct_elbo", proc, settings)
    t = torch.full((32,), 0.9, dtype=torch.float64)
    x_tilde = obj.inputs(data, t, torch.Generator().manual_seed(0))["x_tilde"]
    assert torch.equal(x_tilde[:, :2], data[:, :2]) and not torch.equal(x_tilde[:, 2:], data[:, 2:])
    with pytest.raises(ValueError, match=r"condition prefix 12 must lie in \[0, 12\)"):
        make_objective("ct_elbo", proc, {**settings, "prefix": 12}).inputs(data, t, torch.Generator())


@pytest.mark.slow
def test_conditional_search_and_sampling_through_the_config(make_cfg, tmp_path, monkeypatch):
    """experiment.condition.prefix on an oracle experiment: prefixes from the chain, the JYS search
    runs with them held, and the samples keep them."""
    from test_jys import smooth_chain

    from pipeline.build import build_model
    from pipeline.experiment import Experiment, experiment_of
    from pipeline.search import optimize_config

    smooth_chain().save(tmp_path / "chain.npz")
    cfg = make_cfg("experiment=chain_gauss", f"oracle.chain_file={tmp_path / 'chain.npz'}", "experiment.length=12",
                   "+experiment.condition.prefix=4", "sampler=tau_leaping", "eps=0.01", "jys.num_samples=16", "nfe=4")
    model = build_model(cfg)
    calls = []

    class Watch:  # every model call of the search sees the data's prefix (all zeros here) in place
        process = model.process

        def __call__(self, x, t):
            calls.append(bool((x[:, :4] == 0).all()))
            return model(x, t)

        def identity(self):
            return model.identity()

    real = Experiment.draw_x0
    monkeypatch.setattr(Experiment, "draw_x0", lambda self, n, g: torch.cat([torch.zeros(n, 4, dtype=torch.long),
                                                                            real(self, n, g)[:, 4:]], 1))
    rec = json.loads(optimize_config(cfg, Watch()).read_text())
    assert len(rec["times"]) == 5 and rec["model"]["prefix"] == 4 and rec["prefix"] == 4
    assert calls and all(calls)
    prefix = experiment_of(cfg).prefixes(32)
    assert prefix.shape == (32, 4)
    res = run_sampler(build_model(cfg), "tau_leaping", torch.tensor(rec["times"], dtype=torch.float64), 32, 12,
                      torch.Generator().manual_seed(0), progress=False, prefix=prefix)
    assert torch.equal(res.samples[:, :4], prefix)


def test_whole_sequence_metrics_refuse_a_prefix(make_cfg):
    from pipeline.metrics import evaluate

    cfg = make_cfg("experiment=count", "+experiment.condition.prefix=4")
    with pytest.raises(ValueError, match=r"metrics \[.*'countdown_error'.*\] score whole sequences"):
        evaluate(cfg, torch.zeros(2, 256, dtype=torch.long))


def test_hellinger_metrics_through_the_stages(make_cfg, tmp_path):
    """python -m samplers / metrics on a conditional oracle experiment: hellinger_true equals the hand
    computation against the held-out rows whose prefixes the samples continue, and a reference file
    made with other settings is refused."""
    import metrics.__main__ as metrics_main
    import samplers.__main__ as samplers_main
    from pipeline.experiment import experiment_of

    base = ["experiment=count", "model=oracle", "experiment.length=8", f"experiment.data.dir={tmp_path / 'data'}",
            "experiment.data.num_train=16", "experiment.data.num_valid=4", "+experiment.condition.prefix=2",
            "+experiment.condition.split=valid", "experiment.metrics=[hellinger_ref,hellinger_true,hellinger_true_se]",
            "metrics.reference_nfe=6", "metrics.reference_seed=100", "num_samples=6", "sampler=euler"]
    samplers_main.main.__wrapped__(make_cfg(*base, "schedule=uniform", "nfe=6", "seed=100"))
    cell = make_cfg(*base, "schedule=uniform", "nfe=2", "seed=0")
    samplers_main.main.__wrapped__(cell)
    metrics_main.main.__wrapped__(cell)
    record = json.loads((tmp_path / "count" / "oracle" / "metrics" / "euler-uniform-nfe2.json").read_text())
    with np.load(tmp_path / "count" / "oracle" / "samples" / "euler-uniform-nfe2.npz") as f:
        samples = torch.from_numpy(f["samples"].astype(np.int64))
    valid = experiment_of(cell).load("valid")
    truth = valid[torch.arange(6) % 4]
    assert torch.equal(samples[:, :2], truth[:, :2])
    hand = [math.sqrt(sum((math.sqrt(float((s[2:] == k).sum()) / 6) - math.sqrt(float((v[2:] == k).sum()) / 6)) ** 2
                          for k in range(32)) / 2) for s, v in zip(samples, truth)]
    assert record["metrics"]["hellinger_true"] == pytest.approx(sum(hand) / 6)
    assert 0 <= record["metrics"]["hellinger_ref"] <= 1
    samplers_main.main.__wrapped__(make_cfg(*base, "schedule=uniform", "nfe=6", "seed=100", "final_step=argmax"))
    with pytest.raises(ValueError, match=r"reference samples .* were made with other settings \(differing in \['final_step'\]\)"):
        metrics_main.main.__wrapped__(cell)
