"""The adaptive unmasking samplers (confidence, DUS, EB-Sampler): counts per call, positions that never change,
model calls counted honestly, the EB rule by hand, and the exact law with one token per call."""
import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch

import metrics.__main__ as metrics_main
import samplers.__main__ as samplers_main
from conftest import S0, L, chain_law_pvalue, tiny_chain
from models.chains import countdown_chain
from models.kernels import Absorbing
from models.noise import LogLinear
from models.oracle import OracleModel
from models.process import ForwardProcess
from models.protocol import ModelOutput
from pipeline.search import optimize_config
from samplers.loop import CountingModel, run_sampler
from samplers.schedules import first_count, times_from_counts, uniform, unmasked_counts
from samplers.unmasking import count_times, dilated_order, entropy_bounded_counts, load_order

F64 = torch.float64
ROOT_DIR = Path(__file__).resolve().parents[2]


class Recording(OracleModel):
    """The oracle, keeping every input it is called on."""

    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.inputs = []

    def __call__(self, x, t):
        self.inputs.append(x.clone())
        return super().__call__(x, t)


def countdown_oracle(cls=OracleModel):
    return cls(countdown_chain(), ForwardProcess(LogLinear(1e-3), Absorbing(32)))


def check_revealed_tokens_never_change(inputs, final, mask):
    states = inputs + [final]
    for before, after in zip(states[:-1], states[1:]):
        kept = before != mask
        assert torch.equal(after[kept], before[kept])


@pytest.mark.parametrize("sampler,option", [("confidence", "max"), ("confidence", "margin"), ("dus", "max")])
def test_count_grid_samplers_reveal_the_planned_counts(sampler, option):
    model = countdown_oracle(Recording)
    counts = [0, 5, 40, 100, 101, 256]
    grid = times_from_counts(counts, model.process, 256)
    counting = CountingModel(model)
    res = run_sampler(counting, sampler, grid, 6, 256, torch.Generator().manual_seed(0), batch_size=3, progress=False,
                      confidence=option)
    seen = [(x != 32).sum(1).tolist() for x in model.inputs]
    assert seen == [[k] * 3 for k in counts[:-1]] * 2  # every sequence of a batch at the grid's count, each call
    assert counting.calls == 10 and res.calls_per_batch == [5, 5]
    assert (res.samples != 32).all()
    for b in range(2):
        check_revealed_tokens_never_change(model.inputs[5 * b:5 * b + 5], res.samples[3 * b:3 * b + 3], 32)


def test_dus_reveals_a_users_order_read_from_a_file(tmp_path):
    order = torch.randperm(256, generator=torch.Generator().manual_seed(0))
    np.save(tmp_path / "order.npy", order.numpy())
    (tmp_path / "order.txt").write_text(", ".join(map(str, order.tolist())))
    assert torch.equal(load_order(tmp_path / "order.npy", 256), order)
    assert torch.equal(load_order(tmp_path / "order.txt", 256), order)
    model = countdown_oracle(Recording)
    grid = times_from_counts([0, 3, 10, 256], model.process, 256)
    run_sampler(model, "dus", grid, 2, 256, torch.Generator().manual_seed(0), progress=False, order=order)
    for x, k in zip(model.inputs[1:], [3, 10]):
        assert torch.equal((x != 32).nonzero()[:, 1].view(2, k), order[:k].sort().values.expand(2, k))
    (tmp_path / "short.txt").write_text("0 1 2")
    (tmp_path / "twice.txt").write_text("0 0 " + " ".join(map(str, range(2, 256))))
    (tmp_path / "words.txt").write_text("0 one 2")
    with pytest.raises(ValueError, match=r"short.txt must hold a permutation of the positions 0 … 255, got 3 values"):
        load_order(tmp_path / "short.txt", 256)
    with pytest.raises(ValueError, match="must hold a permutation"):
        load_order(tmp_path / "twice.txt", 256)
    with pytest.raises(ValueError, match="not an integer"):
        load_order(tmp_path / "words.txt", 256)
    with pytest.raises(FileNotFoundError, match="unmask.order: no file at"):
        load_order(tmp_path / "none.txt", 256)
    with pytest.raises(ValueError, match="is for sampler=dus"):
        run_sampler(model, "kgillespie", grid, 2, 256, torch.Generator().manual_seed(0), progress=False, order=order)


def test_dus_reveals_its_dilated_order():
    assert dilated_order(8).tolist() == [0, 4, 2, 6, 1, 3, 5, 7]  # DUS's levels: stride 4, 2, 1
    assert sorted(dilated_order(100).tolist()) == list(range(100)) and dilated_order(1).tolist() == [0]
    model = countdown_oracle(Recording)
    grid = times_from_counts([0, 2, 4, 8, 16, 32, 64, 128, 256], model.process, 256)  # base-2 DUS, one block
    run_sampler(model, "dus", grid, 2, 256, torch.Generator().manual_seed(0), progress=False)
    order = dilated_order(256)
    for x, k in zip(model.inputs[1:], [2, 4, 8, 16, 32, 64, 128]):
        revealed = (x[0] != 32).nonzero().squeeze(1)
        assert torch.equal(revealed, order[:k].sort().values)
        assert torch.equal(revealed, torch.arange(0, 256, 256 // k))  # the multiples of the level's stride


def test_entropy_bound_rule_by_hand():
    h = torch.tensor([[0.1, 0.2, 0.3, 1.0, math.inf], [2.0, 3.0, 4.0, math.inf, math.inf],
                      [math.inf] * 5, [0.0, 0.0, 0.0, 0.0, 0.0]], dtype=F64)
    # Σ_{i≤j} h_i − max_{i≤j} h_i: row 0: 0, 0.1, 0.3, 0.6; row 1: 0, 2, 5; row 3: all 0
    assert entropy_bounded_counts(h, 0.35).tolist() == [3, 1, 0, 5]
    assert entropy_bounded_counts(h, 2.0).tolist() == [4, 2, 0, 5]
    assert entropy_bounded_counts(h, 0.0).tolist() == [1, 1, 0, 5]


class TableModel:
    """A denoiser that returns a fixed probability table p[l] at every masked position, keeping its inputs."""

    def __init__(self, table):
        self.table = table  # [L, S0]
        self.process = ForwardProcess(LogLinear(1e-3), Absorbing(table.shape[1]))
        self.inputs = []

    def __call__(self, x, t):
        self.inputs.append(x.clone())
        return ModelOutput("denoiser", self.table.expand(x.shape[0], -1, -1).clone())


def test_eb_reveals_the_prefix_its_rule_allows_on_a_hand_made_table():
    table = torch.tensor([[0.97, 0.01, 0.01, 0.01], [0.25, 0.25, 0.25, 0.25], [0.7, 0.1, 0.1, 0.1],
                          [0.9, 0.05, 0.03, 0.02], [0.5, 0.5, 0.0, 0.0], [0.4, 0.3, 0.2, 0.1]], dtype=F64)
    h = scipy.stats.entropy(table.numpy(), axis=1)  # nats
    order = np.argsort(h)
    for gamma in (0.0, 0.2, 1.0, 3.0, 100.0):
        sums = np.cumsum(h[order]) - h[order]  # sorted ascending, so the max is the last one
        n = max(1, int((sums <= gamma).sum()))
        model = TableModel(table)
        res = run_sampler(model, "eb", uniform(1), 5, 6, torch.Generator().manual_seed(0), progress=False, gamma=gamma)
        after_first = model.inputs[1] if len(model.inputs) > 1 else res.samples
        revealed = after_first != 4
        assert (revealed.sum(1) == n).all(), gamma
        assert revealed[:, order[:n]].all()  # the lowest-entropy positions first
        assert (res.sequence_calls == len(model.inputs)).all()
        assert res.calls_per_batch == [float(len(model.inputs))]
        assert (res.samples[:, 4] < 2).all()  # tokens drawn from p: never where p is 0


def test_eb_counts_calls_per_sequence_and_never_changes_revealed_tokens():
    model = countdown_oracle(Recording)
    res = run_sampler(model, "eb", uniform(1), 8, 256, torch.Generator().manual_seed(3), batch_size=8, progress=False,
                      gamma=3.0)
    rows = sum(x.shape[0] for x in model.inputs)
    assert int(res.sequence_calls.sum()) == rows  # each call counted for the sequences it served
    assert len(model.inputs) == int(res.sequence_calls.max())
    assert res.calls_per_batch == [float(res.sequence_calls.double().mean())]
    assert res.sequence_calls.min() < res.sequence_calls.max()  # adaptive: the sequences differ
    assert (res.samples != 32).all()
    # a sequence leaves the batch once it is done; follow sequence 0 while it is in every call
    for x_prev, x_next in zip(model.inputs[:-1], model.inputs[1:]):
        if x_next.shape[0] == x_prev.shape[0]:
            kept = x_prev != 32
            assert torch.equal(x_next[kept], x_prev[kept])


@pytest.mark.parametrize("sampler,option", [("confidence", "max"), ("confidence", "margin"), ("dus", None),
                                            ("eb", None)])
def test_one_token_per_call_reproduces_the_chain(sampler, option):
    """With the exact denoiser and one token per call, any rule that picks positions from what is revealed
    draws the exact law (EB with γ = 0 reveals one token per call here: no position has zero entropy)."""
    proc = ForwardProcess(LogLinear(), Absorbing(S0))
    oracle = OracleModel(tiny_chain(), proc, floor=0.05)
    grid = times_from_counts(range(L + 1), proc, L)
    n = 6000
    res = run_sampler(oracle, sampler, grid, n, L, torch.Generator().manual_seed(11), batch_size=n, progress=False,
                      confidence=option or "max", gamma=0.0)
    assert res.calls_per_batch == [L]
    assert chain_law_pvalue(res.samples, oracle.chain) > 1e-3


def test_parallel_decoding_is_not_the_exact_law():
    """The chi-square test above can fail: revealing 2 tokens per call does not draw the chain's law."""
    proc = ForwardProcess(LogLinear(), Absorbing(S0))
    oracle = OracleModel(tiny_chain(), proc, floor=0.05)
    n = 6000
    res = run_sampler(oracle, "dus", times_from_counts([0, 2, 4], proc, L), n, L, torch.Generator().manual_seed(11),
                      batch_size=n, progress=False)
    assert chain_law_pvalue(res.samples, oracle.chain) < 1e-6


@pytest.mark.slow
def test_pipeline_eb_files_and_count_samplers_share_the_count_search(make_cfg, tmp_path, monkeypatch):
    common = ("experiment=count", "model=oracle", "experiment.length=16", "num_samples=8", "batch_size=4",
              "jys.num_samples=8", "jys.max_iter=3", "experiment.data=null")
    cfg = make_cfg(*common, "sampler=eb", "unmask.gamma=0.5", "nfe=3")
    samplers_main.main.__wrapped__(cfg)
    path = tmp_path / "count" / "oracle" / "samples" / "eb-gamma0.5.npz"
    with np.load(path) as f:
        calls, per_seq = float(f["model_calls"]), f["sequence_calls"]
        key = json.loads(str(f["config"]))
    assert per_seq.shape == (8,) and calls == pytest.approx(per_seq.mean())
    assert "nfe" not in key and key["unmask"] == {"gamma": 0.5}
    metrics_main.main.__wrapped__(cfg)
    rec = json.loads((tmp_path / "count" / "oracle" / "metrics" / "eb-gamma0.5.json").read_text())
    assert rec["nfe"] is None and rec["nfe_calls"] == pytest.approx(calls) and rec["gamma"] == 0.5
    with pytest.raises(ValueError, match="unmask.gamma must be a number >= 0"):
        samplers_main.main.__wrapped__(make_cfg(*common, "sampler=eb", "unmask.gamma=-1"))
    with pytest.raises(ValueError, match="eb takes no schedule"):
        optimize_config(make_cfg(*common, "sampler=eb"))
    # confidence takes k-Gillespie's schedule in counts, from the same cached search; DUS its own order's J
    # (jys.order=auto), or with jys.order=random k-Gillespie's too
    paths = {s: optimize_config(make_cfg(*common, f"sampler={s}", "nfe=3")) for s in ("kgillespie", "confidence", "dus")}
    recs = {s: json.loads(p.read_text()) for s, p in paths.items()}
    assert recs["confidence"]["counts"] == recs["kgillespie"]["counts"]
    assert recs["confidence"]["state_file"] == recs["kgillespie"]["state_file"]
    assert recs["dus"]["order"] == "dus" and "order-dus-" in recs["dus"]["state_file"] and recs["dus"]["label"] == "jys"
    assert recs["dus"]["model_calls"] == 16  # one read per count 0 … L − 1 (one batch of the lattice sequences)
    random = json.loads(optimize_config(make_cfg(*common, "sampler=dus", "nfe=3", "jys.order=random")).read_text())
    assert random["counts"] == recs["kgillespie"]["counts"] and random["label"] == "jys-orandom"
    with pytest.raises(ValueError, match="jys.order=dus is for count-grid samplers"):
        optimize_config(make_cfg(*common, "sampler=euler", "nfe=3", "jys.order=dus"))
    with pytest.raises(ValueError, match="kgillespie reveals other positions"):
        optimize_config(make_cfg(*common, "sampler=kgillespie", "nfe=3", "jys.order=dus"))
    with pytest.raises(ValueError, match="has no jys.weight"):  # not silently ignored (nor put in the label)
        optimize_config(make_cfg(*common, "sampler=dus", "nfe=3", "jys.weight=survival"))
    # DUS in a user's order (unmask.order): J's table, label, samples and metrics carry the order; a schedule searched
    # for another order is refused
    for name, perm in (("l2r", range(16)), ("r2l", range(15, -1, -1))):
        (tmp_path / f"{name}.txt").write_text(" ".join(map(str, perm)))
    l2r = make_cfg(*common, "sampler=dus", "nfe=3", f"unmask.order={tmp_path / 'l2r.txt'}", "schedule=jys")
    rec = json.loads(optimize_config(l2r).read_text())
    tag = rec["label"].removeprefix("jys-perm")
    assert rec["label"] == f"jys-perm{tag}" and rec["order_sha256"].startswith(tag) and len(tag) == 8
    assert rec["state_file"] != recs["dus"]["state_file"] and rec["counts"] != recs["dus"]["counts"]
    given = []  # the order the sampler is handed
    real = samplers_main.run_sampler
    monkeypatch.setattr(samplers_main, "run_sampler", lambda *a, **k: given.append(k["order"]) or real(*a, **k))
    samplers_main.main.__wrapped__(l2r)
    assert len(given) == 2 and all(torch.equal(o, torch.arange(16)) for o in given)  # both batches of 4
    metrics_main.main.__wrapped__(l2r)
    assert (tmp_path / "count" / "oracle" / "samples" / f"dus-jys-nfe3-perm{tag}.npz").is_file()
    met = json.loads((tmp_path / "count" / "oracle" / "metrics" / f"dus-jys-nfe3-perm{tag}.json").read_text())
    assert met["schedule"] == "jys" and met["order_sha256"] == rec["order_sha256"]
    other = make_cfg(*common, "sampler=dus", "nfe=3", f"unmask.order={tmp_path / 'r2l.txt'}",
                     f"schedule={tmp_path / 'count' / 'oracle' / 'schedules' / f'dus-jys-perm{tag}-nfe3.json'}")
    with pytest.raises(ValueError, match=f"searched for DUS in the order {rec['order_sha256'][:8]}"):
        samplers_main.main.__wrapped__(other)
    dilated = make_cfg(*common, "sampler=dus", "nfe=3", f"unmask.order={tmp_path / 'l2r.txt'}",
                       f"schedule={paths['dus']}")  # a schedule of J for the dilated order
    with pytest.raises(ValueError, match="searched for DUS in DUS's dilated order, and this run reveals in the order"):
        samplers_main.main.__wrapped__(dilated)
    with pytest.raises(ValueError, match="sampler=kgillespie takes none"):
        optimize_config(make_cfg(*common, "sampler=kgillespie", "nfe=3", f"unmask.order={tmp_path / 'l2r.txt'}"))
    # k-Gillespie with J over a random order per sequence (jys.order=shuffle): its own table and label
    shuffle = json.loads(optimize_config(make_cfg(*common, "sampler=kgillespie", "nfe=3", "jys.order=shuffle")).read_text())
    assert shuffle["label"] == "jys-oshuffle" and "order-shuffle-" in shuffle["state_file"]
    assert shuffle["model_calls"] == 16 and "order_sha256" not in shuffle
    margin = make_cfg(*common, "sampler=confidence", "unmask.confidence=margin", "schedule=jys", "nfe=3")
    samplers_main.main.__wrapped__(margin)
    assert (tmp_path / "count" / "oracle" / "samples" / "confidence-jys-nfe3-margin.npz").is_file()
    with pytest.raises(ValueError, match="unknown unmask.confidence 'top'"):
        samplers_main.main.__wrapped__(make_cfg(*common, "sampler=confidence", "unmask.confidence=top"))


def test_unmasking_samplers_need_an_absorbing_kernel():
    from models.kernels import Uniform
    proc = ForwardProcess(LogLinear(), Uniform(S0))
    oracle = OracleModel(tiny_chain(), proc)
    for sampler in ("confidence", "dus", "eb"):
        with pytest.raises(ValueError, match="needs an absorbing kernel"):
            run_sampler(oracle, sampler, uniform(4), 2, L, torch.Generator().manual_seed(0), progress=False)


@pytest.mark.slow
def test_eb_tuning_finds_a_gamma_that_spends_the_budget():
    import importlib.util
    spec = importlib.util.spec_from_file_location("eb_tune", ROOT_DIR / "scripts" / "eb_tune.py")
    eb_tune = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(eb_tune)
    model = countdown_oracle()
    for budget in (4, 8):
        r = eb_tune.tune(model, budget, 8, 32, 5, 8, 12)
        again = eb_tune.pilot_calls(model, r["gamma"], 8, 32, 5, 8)
        assert again == r["pilot_calls"] and abs(again - budget) <= 0.15 * budget


def test_eb_times_where_the_first_counts_are_reached_at_no_time_below_one():
    """L = 2000 under loglinear noise: L·e^{−σ̄(1)} ≈ 2.0, so one unmasked token has no time t < 1 of its own."""
    proc = countdown_oracle().process
    assert first_count(proc, 2000) == 2
    times = count_times(torch.tensor([0, 1, 2, 700, 2000]), proc, 2000)
    assert times[0] == 1.0 and times[1] == times[2] < 1.0 and times[2] > times[3] > times[4]
    assert unmasked_counts(times[2:].tolist(), proc, 2000) == [2, 700, 2000]


def test_confidence_reveals_the_most_confident_positions_by_its_score():
    # max probability orders the rows E A B C F D; the margin (top − second) orders them C E B F A|D
    table = torch.tensor([[0.5, 0.5, 0.0, 0.0], [0.45, 0.1, 0.1, 0.35], [0.42, 0.2, 0.19, 0.19], [0.3, 0.3, 0.2, 0.2],
                          [0.6, 0.4, 0.0, 0.0], [0.35, 0.05, 0.3, 0.3]], dtype=F64)
    for score, top in (("max", [0, 4]), ("margin", [2, 4])):
        model = TableModel(table)
        grid = times_from_counts([0, 2, 6], model.process, 6)
        run_sampler(model, "confidence", grid, 4, 6, torch.Generator().manual_seed(0), progress=False,
                    confidence=score)
        revealed = model.inputs[1] != 4
        assert (revealed.nonzero()[:, 1].reshape(4, 2) == torch.tensor(top)).all(), score


class TimeRecording(OracleModel):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.calls = []

    def __call__(self, x, t):
        self.calls.append((x.clone(), t.clone()))
        return super().__call__(x, t)


def test_eb_reads_each_sequence_at_the_time_of_its_own_count():
    model = countdown_oracle(TimeRecording)
    run_sampler(model, "eb", uniform(1), 6, 64, torch.Generator().manual_seed(2), progress=False, gamma=2.0)
    differ = 0
    for x, t in model.calls:
        counts = (x != 32).sum(1)
        assert torch.equal(t, count_times(counts, model.process, 64))
        differ += len(counts.unique()) > 1
    assert differ > 0  # the sequences' counts, and so their times, differed within a call
