"""Reuse never mixes models: cached samples, search levels and metrics records are keyed on the model's
identity (weights or chain hash), the data's identity and FORMAT_VERSION."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

import metrics.__main__ as metrics_main
import samplers.__main__ as samplers_main
from models.chains import smooth_chain
from models.sedd import SEDD, SEDDConfig
from pipeline.build import build_model
from pipeline.runs import FORMAT_VERSION
from pipeline.search import check_searched_as, optimize_config, searched_as, settings_from
from samplers.schedules import uniform
from train.loop import EMA, export_weights

SPEC = {"noise": {"name": "loglinear", "eps": 1e-3}, "kernel": {"name": "absorbing", "num_states": 32}}


def write_weights(directory, seed):
    """A tiny SEDD of the count experiment's process (33 states), in the project's format."""
    torch.manual_seed(seed)
    net = SEDD(SEDDConfig(vocab_size=33, hidden_size=16, cond_dim=8, n_blocks=1, n_heads=2, dropout=0.0))
    with torch.no_grad():
        for p in net.parameters():
            p.normal_(0, 0.2)
    export_weights(net, EMA(net.parameters(), 0.5), directory, SPEC, "count", {"steps": 0})


@pytest.fixture
def sampling_calls(monkeypatch):
    calls = []
    real = samplers_main.run_sampler
    monkeypatch.setattr(samplers_main, "run_sampler", lambda *a, **k: calls.append(1) or real(*a, **k))
    return calls


def stored(path, field):
    with np.load(path) as f:
        return json.loads(str(f[field]))


@pytest.mark.slow
def test_samples_are_redone_when_weights_or_data_change(make_cfg, tmp_path, sampling_calls):
    weights = tmp_path / "weights"
    cfg = make_cfg("experiment=count", "model=count-sedd", f"model.path={weights}", "model.precision=fp32",
                   "device=cpu", "experiment.length=8", f"experiment.data.dir={tmp_path / 'data'}",
                   "experiment.data.num_train=16", "experiment.data.num_valid=4", "nfe=2", "num_samples=4",
                   "jys.num_samples=8", "jys.max_iter=4", "jys.lattice_samples=8", "jys.lattice=4")
    search = tmp_path / "count" / "count-sedd" / "schedules" / "search"
    samples = tmp_path / "count" / "count-sedd" / "samples" / "euler-uniform-nfe2.npz"
    write_weights(weights, 0)
    samplers_main.main.__wrapped__(cfg)
    first = stored(samples, "model_identity")["weights_sha256"]
    samplers_main.main.__wrapped__(cfg)
    assert len(sampling_calls) == 1  # same model, data and config: reused
    other = cfg.copy()
    other.final_step = "argmax"  # a metric run with other settings than the samples file's: refused, naming them
    with pytest.raises(ValueError, match=r"other settings than this config's: final_step: stored \"sample\", now "
                                         r"\"argmax\"\. Remake"):
        metrics_main.main.__wrapped__(other)
    other = cfg.copy()
    other.num_samples, other.batch_size = 99, 7  # the sizes need not be restated (the scripts give them to sampling)
    metrics_main.main.__wrapped__(other)

    write_weights(weights, 1)  # scripts/train.sh rewrites the weights in place
    with pytest.raises(ValueError, match=r"other settings .*model_identity.weights_sha256: stored .* Remake them"):
        metrics_main.main.__wrapped__(cfg)  # stale samples are never evaluated under the new model's name
    samplers_main.main.__wrapped__(cfg)
    assert len(sampling_calls) == 2
    second = stored(samples, "model_identity")["weights_sha256"]
    assert second != first
    metrics_main.main.__wrapped__(cfg)
    record = json.loads((tmp_path / "count" / "count-sedd" / "metrics" / "euler-uniform-nfe2.json").read_text())
    assert record["model_identity"]["weights_sha256"] == second and record["format_version"] == FORMAT_VERSION
    assert record["data_identity"] == stored(samples, "data_identity")
    grid = uniform(2, float(cfg.eps))
    assert record["grid_sha256"] == metrics_main.grid_digest(grid) != metrics_main.grid_digest(grid.flip(0))

    optimize_config(cfg)
    assert len(list(search.glob("*.json"))) == 1
    train = tmp_path / "data" / "train.npy"
    rows = np.load(train)
    np.save(train, (rows + 1) % 32)  # same shape, other bytes
    samplers_main.main.__wrapped__(cfg)
    assert len(sampling_calls) == 3
    optimize_config(cfg)
    assert len(list(search.glob("*.json"))) == 2  # x_0 come from the data: its levels are not reused
    assert stored(samples, "data_identity") != record["data_identity"]


@pytest.mark.slow
def test_chain_file_bytes_key_samples_and_search_levels(make_cfg, tmp_path, sampling_calls):
    chain = tmp_path / "chain.npz"
    cfg = make_cfg("experiment=chain", "model=oracle", f"oracle.chain_file={chain}", "experiment.length=8",
                   "nfe=2", "num_samples=4", "jys.num_samples=8", "jys.max_iter=4")
    samples = tmp_path / "chain" / "oracle" / "samples" / "euler-uniform-nfe2.npz"
    search = tmp_path / "chain" / "oracle" / "schedules" / "search"
    T = np.full((4, 4), 0.25)
    np.savez(chain, initial=np.full(4, 0.25), transition=T)
    samplers_main.main.__wrapped__(cfg)
    optimize_config(cfg)
    samplers_main.main.__wrapped__(cfg)
    assert len(sampling_calls) == 1 and len(list(search.glob("*.json"))) == 1
    np.savez(chain, initial=np.full(4, 0.25), transition=np.roll(np.eye(4), 1, axis=1) * 0.7 + 0.075)
    samplers_main.main.__wrapped__(cfg)
    assert len(sampling_calls) == 2  # same path, other chain: redone
    assert stored(samples, "data_identity") == {"chain_sha256": stored(samples, "model_identity")["chain_sha256"]}
    optimize_config(cfg)
    assert len(list(search.glob("*.json"))) == 2  # a new search, not the old chain's levels


def test_a_schedule_searched_for_other_weights_is_refused():
    ident = {"name": "m", "weights_sha256": "a" * 64}
    samplers_main.check_schedule_model({"model": dict(ident)}, ident, "jys")
    samplers_main.check_schedule_model({}, ident, "uniform")
    with pytest.raises(ValueError, match="schedule 'jys' was searched for a model with weights_sha256 bbbb"):
        samplers_main.check_schedule_model({"model": {**ident, "weights_sha256": "b" * 64}}, ident, "jys")


def test_a_schedule_searched_under_other_defaults_is_refused(make_cfg, sampling_calls):
    """schedule=jys samples the schedule today's defaults search: a file an older search left in runs/ (its grid at ε
    from before jys.end=denoise, another weight or objective) is refused, naming the field, and not sampled; the
    same file named as a path is the user's choice and is sampled."""
    over = ("experiment=count_uniform", "model=oracle", "sampler=euler", "nfe=2", "experiment.length=24",
            "experiment.data=null", "jys.lattice=8", "jys.lattice_samples=16", "schedule=jys", "num_samples=4",
            "batch_size=4", "overwrite=true")
    cfg = make_cfg(*over)
    path = optimize_config(cfg)
    rec = json.loads(path.read_text())
    assert (rec["end"], rec["weight"], rec["rule"]) == ("denoise", "marginal", "euler")  # each resolved from 'auto'
    samplers_main.main.__wrapped__(cfg)
    assert len(sampling_calls) == 1
    other = "destination" if rec["objective"] == "girsanov" else "girsanov"
    for field, was, now in (("end", None, "denoise"), ("weight", "none", "marginal"),
                            ("objective", other, rec["objective"]), ("rule", None, "euler")):
        stale = {k: v for k, v in rec.items() if k != field} if was is None else {**rec, field: was}
        path.write_text(json.dumps(stale))
        shown = {"end": r"eps \(not recorded\)", "rule": r"none \(not recorded\)"}.get(field, was)  # lacked: old value
        with pytest.raises(ValueError, match=rf"schedule=jys \(euler, nfe=2\) was searched with {field}={shown}, "
                                             rf"and this config searches {field}={now}"):
            samplers_main.main.__wrapped__(cfg)
    assert len(sampling_calls) == 1  # none of them sampled
    samplers_main.main.__wrapped__(make_cfg(*[o for o in over if o != "schedule=jys"], f"schedule={path}"))
    path.write_text(json.dumps(rec))
    samplers_main.main.__wrapped__(cfg)
    assert len(sampling_calls) == 3


@pytest.mark.parametrize("over", [
    ("experiment=count", "sampler=kgillespie"), ("experiment=count", "sampler=dus"),
    ("experiment=count", "sampler=euler"), ("experiment=count_uniform", "sampler=tau_leaping", "multi_jump=last"),
    ("experiment=count_uniform", "sampler=euler", "final_step=argmax"), ("experiment=chain_gauss", "sampler=euler"),
    ("experiment=chain_gauss", "sampler=tau_leaping")])
def test_a_fresh_jys_schedule_is_what_searched_as_expects(make_cfg, tmp_path, over):
    """searched_as re-derives what each search writes for the label 'jys': a schedule just searched for a config is
    never refused to it (count grids, DUS's order, the grid's end, a step rule, an ordinal kernel), and τ-leaping's
    two multi-jump rules share one schedule."""
    if "experiment=chain_gauss" in over:  # an ordinal kernel on a smooth chain of 17 states
        smooth_chain().save(tmp_path / "chain.npz")
        over = (*over, f"oracle.chain_file={tmp_path / 'chain.npz'}")
    cfg = make_cfg(*over, "model=oracle", "nfe=2", "experiment.length=8", "experiment.data=null", "jys.lattice=4",
                   "jys.lattice_samples=4")
    model = build_model(cfg)
    rec = json.loads(optimize_config(cfg, model).read_text())
    assert rec["label"] == "jys"
    check_searched_as(rec, searched_as(settings_from(cfg), model, str(cfg.sampler)), "schedule=jys")
    if "multi_jump=last" in over:
        assert rec["rule"] == "tau_leaping_last"
        reject = make_cfg(*[o for o in over if o != "multi_jump=last"], "model=oracle", "nfe=2", "experiment.length=8")
        check_searched_as(rec, searched_as(settings_from(reject), model, "tau_leaping"), "schedule=jys")


def test_a_cache_key_equals_itself_read_back_from_its_file(tmp_path):
    """A payload with a tuple (the Beta search's grid of values) must match the key its file stores: before, the
    tuple read back as a list, so the Beta scores were recomputed on every run."""
    from common.io import atomic_write_json
    from pipeline.runs import cache_key

    key, digest = cache_key("beta", {"values": (0.1, 0.2), "nested": {"points": (1, 2)}, "n": 3})
    path = atomic_write_json(tmp_path / f"beta-{digest}.json", {"key": key})
    assert json.loads(path.read_text())["key"] == key
    assert cache_key("beta", {"values": [0.1, 0.2], "nested": {"points": [1, 2]}, "n": 3}) == (key, digest)
    with pytest.raises(ValueError, match="unknown cache kind 'betas'"):
        cache_key("betas", {})


def test_order_search_on_the_models_own_law(make_cfg, tmp_path):
    """jys.states=model: J for DUS's order read on the model's own law, drawn by DUS revealing one token per call from
    the search's seed; its own label, table and cost; refused where J is not the fixed-order one."""
    from jys.order import order_table
    from samplers.loop import run_sampler
    from samplers.schedules import times_from_counts
    from samplers.unmasking import dilated_order

    over = ("experiment=count", "sampler=dus", "model=oracle", "nfe=2", "experiment.length=8", "experiment.data=null",
            "jys.lattice_samples=6", "jys.batch_size=4")
    model = build_model(make_cfg(*over))
    data = json.loads(optimize_config(make_cfg(*over), model).read_text())
    path = optimize_config(make_cfg(*over, "jys.states=model"), model)
    rec = json.loads(path.read_text())
    assert path.name == "dus-jys-smodel-nfe2.json" and rec["label"] == "jys-smodel" and rec["states"] == "model"
    assert rec["draw_batch"] == 4
    assert "states" not in data and data["state_file"] != rec["state_file"]
    x0 = run_sampler(model, "dus", times_from_counts(list(range(9)), model.process, 8), 6, 8,
                     torch.Generator().manual_seed(0), batch_size=4, progress=False).samples
    D, counts, calls = order_table(model, x0, dilated_order(8), batch_size=4)
    table = json.loads(Path(rec["state_file"]).read_text())
    assert table["D"] == [[v if math.isfinite(v) else None for v in row] for row in D.tolist()]
    assert rec["model_calls"] == calls + 8 * 2 and rec["sample_forwards"] == 2 * 8 * 6
    with pytest.raises(ValueError, match="jys.states=model is read by J for DUS.s fixed order"):
        optimize_config(make_cfg(*over[:1], "sampler=euler", *over[2:], "jys.states=model"), model)
    with pytest.raises(ValueError, match="unknown jys.states 'chain'"):
        optimize_config(make_cfg(*over, "jys.states=chain"), model)
    with pytest.raises(ValueError, match="jys.states=model with jys.order=shuffle"):
        optimize_config(make_cfg(*over[:1], "sampler=kgillespie", *over[2:], "jys.order=shuffle", "jys.states=model"),
                        model)
