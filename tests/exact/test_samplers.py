"""Every sampler, driven by the exact oracle on a fine grid, reproduces the chain."""
import json
import math

import numpy as np
import pytest
import scipy.stats
import torch

from conftest import S0, L, chain_law_pvalue, tiny_chain, tiny_process
from metrics.sequences import countdown_error
from models.chains import countdown_chain
from models.kernels import Absorbing, Uniform
from models.noise import Geometric, LogLinear
from models.oracle import OracleModel
from models.process import ForwardProcess
from samplers.loop import CountingModel, run_sampler
from samplers.schedules import (
    check_grid,
    cosine,
    first_count,
    times_from_counts,
    token_counts,
    uniform,
    unmasked_counts,
)

CASES = [
    ("absorbing", "euler"), ("absorbing", "tau_leaping"), ("absorbing", "tweedie"),
    ("absorbing", "kgillespie"), ("absorbing", "first_hitting"),
    ("uniform", "euler"), ("uniform", "tau_leaping"), ("uniform", "tweedie"),
    ("gaussian", "euler"), ("gaussian", "tau_leaping"),
    ("absorbing", "trapezoidal"), ("uniform", "trapezoidal"), ("gaussian", "trapezoidal"),
]


@pytest.mark.slow
@pytest.mark.parametrize("kernel,sampler", CASES)
def test_fine_grid_reproduces_the_chain(kernel, sampler):
    proc = tiny_process(kernel)
    oracle = OracleModel(tiny_chain(), proc, floor=0.05)
    # 400 steps for every time-grid sampler (the trapezoidal step's 800 calls included: at 200 steps its law on the
    # uniform kernel is still detectably off, p = 3e-5 at this seed, where Euler's at 400 is not)
    grid = times_from_counts(range(L + 1), proc, L) if sampler == "kgillespie" else uniform(400, 1e-4)
    n = 6000
    res = run_sampler(oracle, sampler, grid, n, L, torch.Generator().manual_seed(7), batch_size=n, progress=False)
    assert chain_law_pvalue(res.samples, oracle.chain) > 1e-3


@pytest.mark.slow
def test_countdown_euler_1024_steps_is_nearly_exact():
    proc = ForwardProcess(LogLinear(1e-3), Absorbing(32))
    oracle = OracleModel(countdown_chain(), proc)
    res = run_sampler(oracle, "euler", uniform(1024), 16, 256, torch.Generator().manual_seed(0), progress=False)
    assert countdown_error(res.samples) < 0.01


def test_nfe_is_model_calls_and_kgillespie_unmasks_the_grid():
    proc = ForwardProcess(LogLinear(1e-3), Absorbing(32))
    seen = []

    class Recording(OracleModel):
        def __call__(self, x, t):
            seen.append(int((x != 32).sum(1).unique().item()))
            return super().__call__(x, t)

    grid = times_from_counts([0, 10, 40, 100, 200, 256], proc, 256)
    counting = CountingModel(Recording(countdown_chain(), proc))
    res = run_sampler(counting, "kgillespie", grid, 8, 256, torch.Generator().manual_seed(1), batch_size=4,
                      progress=False)
    assert seen == [0, 10, 40, 100, 200] * 2  # unmasked counts seen at each call, each batch
    assert counting.calls == 10 and res.calls_per_batch == [5, 5]
    assert token_counts(grid, proc, 256) == [0, 10, 40, 100, 200, 256]
    assert (res.samples != 32).all()
    # Euler with a final noise-removal step: NFE spent = grid steps + 1 when masks remain.
    counting = CountingModel(OracleModel(countdown_chain(), proc))
    res = run_sampler(counting, "euler", uniform(3), 4, 256, torch.Generator().manual_seed(2), progress=False)
    assert counting.calls == sum(res.calls_per_batch) and res.calls_per_batch[0] in (3, 4)


def test_runs_are_repeatable_with_a_seed():
    proc = ForwardProcess(LogLinear(1e-3), Absorbing(32))
    oracle = OracleModel(countdown_chain(), proc)
    a, b = (run_sampler(oracle, "tau_leaping", cosine(6), 8, 64, torch.Generator().manual_seed(5),
                        progress=False).samples for _ in range(2))
    assert torch.equal(a, b)


def test_bad_grids_and_samplers_are_clear_errors():
    with pytest.raises(ValueError, match="strictly decreasing"):
        check_grid([1.0, 0.5, 0.5, 0.1])
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        check_grid([1.5, 0.5, 0.0])
    with pytest.raises(ValueError, match="at least 2 times"):
        check_grid([1.0])
    with pytest.raises(ValueError, match="nfe must be an integer >= 1"):
        uniform(0)
    with pytest.raises(ValueError, match=r"eps must lie in \(0, 1\)"):
        cosine(4, eps=0.0)
    proc = ForwardProcess(LogLinear(1e-3), Absorbing(32))
    oracle = OracleModel(countdown_chain(), proc)
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="unknown sampler 'heun'"):
        run_sampler(oracle, "heun", uniform(4), 2, 8, g)
    with pytest.raises(ValueError, match="both give 0 of 8 tokens"):
        run_sampler(oracle, "kgillespie", uniform(64), 2, 8, g)
    uniform_oracle = OracleModel(countdown_chain(), ForwardProcess(LogLinear(), Uniform(32)))
    with pytest.raises(ValueError, match="needs an absorbing kernel"):
        run_sampler(uniform_oracle, "first_hitting", uniform(4), 2, 8, g)


@pytest.mark.parametrize("L", [256, 1024, 5000])
def test_count_time_map_is_exact_at_both_ends_for_long_sequences(L):
    proc = ForwardProcess(LogLinear(), Absorbing(4))
    low = first_count(proc, L)
    counts = [0] + list(range(low, L + 1))
    times = times_from_counts(counts, proc, L)
    check_grid(times)  # strictly decreasing, in [0, 1]
    assert float(times[0]) == 1.0 and float(times[-1]) == 0.0
    assert unmasked_counts(times, proc, L) == counts  # the sampler follows exactly these counts
    assert unmasked_counts([1.0], proc, L) == [0]  # the prior: nothing unmasked, even where L·e^(-σ(1)) ≥ 0.5
    if low > 1:
        with pytest.raises(ValueError, match=f"smallest reachable count is {low}"):
            times_from_counts([0, 1, L], proc, L)


@pytest.mark.slow
@pytest.mark.parametrize("search", ["hierarchy", "lattice"])
def test_kgillespie_jys_search_at_length_1024_gives_a_grid_the_sampler_follows(make_cfg, search):
    from pipeline.build import build_model
    from pipeline.search import optimize_config
    cfg = make_cfg("experiment.length=1024", "experiment.data=null", "sampler=kgillespie", "nfe=3",
                   "jys.num_samples=2", "jys.max_iter=4", f"jys.search={search}", "jys.lattice=4",
                   "jys.lattice_samples=2")
    rec = json.loads(optimize_config(cfg).read_text())
    assert rec["counts"][0] == 0 and rec["counts"][-1] == 1024 and len(rec["counts"]) == 4
    res = run_sampler(build_model(cfg), "kgillespie", torch.tensor(rec["times"], dtype=torch.float64), 2, 1024,
                      torch.Generator().manual_seed(0), progress=False)
    assert res.calls_per_batch == [3] and not (res.samples == 32).any()


@pytest.mark.parametrize("sampler", ["euler", "tweedie"])
def test_chunked_steps_draw_the_same_samples(sampler, monkeypatch):
    """Steps build their probabilities chunk by chunk over positions (memory); the samples must not change."""
    import samplers.steps as steps
    model = OracleModel(countdown_chain(6), ForwardProcess(Geometric(), Uniform(6)))
    whole = run_sampler(model, sampler, uniform(5), 32, 20, torch.Generator().manual_seed(0), progress=False).samples
    monkeypatch.setattr(steps, "CHUNK_BYTES", 32 * 6 * 8 * 3)  # 3 positions per chunk
    chunked = run_sampler(model, sampler, uniform(5), 32, 20, torch.Generator().manual_seed(0), progress=False).samples
    assert torch.equal(whole, chunked)


@pytest.mark.parametrize("sampler", ["euler", "tweedie"])
def test_skipping_positions_that_cannot_move_draws_the_same_samples(sampler, monkeypatch):
    """Absorbing steps and the noise removal build probabilities only at masked positions; treating every
    position as movable (the dense computation) must give the same samples."""
    model = OracleModel(countdown_chain(6), ForwardProcess(LogLinear(), Absorbing(6)))
    grid = torch.tensor([1.0, 0.7, 0.4, 0.2], dtype=torch.float64)  # masks left at the end: denoise draws too
    skipping = run_sampler(model, sampler, grid, 32, 20, torch.Generator().manual_seed(0), progress=False)
    monkeypatch.setattr(Absorbing, "movable", lambda self, x: torch.ones_like(x, dtype=torch.bool))
    dense = run_sampler(model, sampler, grid, 32, 20, torch.Generator().manual_seed(0), progress=False)
    assert skipping.calls_per_batch == dense.calls_per_batch == [4]
    assert torch.equal(skipping.samples, dense.samples)


def test_nfe_in_tables_counts_the_noise_removal_call_always():
    from samplers.loop import calls_per_sequence
    assert calls_per_sequence("euler", 7) == 8 and calls_per_sequence("tweedie", 7) == 8
    assert calls_per_sequence("kgillespie", 8) == 8 and calls_per_sequence("euler", 7, "none") == 7
    # a batch that still holds a mask at ε spends exactly that many calls
    model = OracleModel(countdown_chain(8), ForwardProcess(LogLinear(), Absorbing(8)))
    grid = torch.tensor([1.0, 0.6, 0.3], dtype=torch.float64)  # ends with masks left: the call is made
    res = run_sampler(model, "euler", grid, 8, 32, torch.Generator().manual_seed(0), progress=False)
    assert res.calls_per_batch == [calls_per_sequence("euler", 2)]


class FixedScores:
    """A 'model' whose log ratios are the same table at every position and time: the reverse rates of a
    τ-leaping step are then known in closed form."""

    def __init__(self, process, log_ratio):
        self.process, self.log_ratio = process, log_ratio

    def __call__(self, x, t):
        from models.protocol import ModelOutput
        out = self.log_ratio.expand(*x.shape, -1).clone()
        return ModelOutput("score", out.scatter(-1, x.unsqueeze(-1), 0.0))


@pytest.mark.parametrize("multi_jump", ["reject", "last"])
def test_tau_leaping_multi_jump_rules_follow_their_closed_forms(multi_jump):
    """One τ-leaping step of a uniform kernel from token 0 with total jump intensity Λ = 1.4 (so 54% of the
    positions that jump, 41% of all, jump twice or more): 'reject' moves to y with P = λ_y e^{−Λ}, 'last' with
    P = λ_y (1 − e^{−Λ}) / Λ, and the rest stay (chi-square over the S0 outcomes)."""
    from samplers.steps import tau_leaping_step
    proc = ForwardProcess(Geometric(1e-4, 20.0), Uniform(S0))
    n, t, s = 40000, 0.5, 0.45
    x = torch.zeros(1, n, dtype=torch.long)
    tb = torch.tensor([t], dtype=torch.float64)
    weight = torch.arange(S0, dtype=torch.float64)  # λ_y ∝ y: no intensity to stay at 0
    base = (t - s) * proc.sigma_rate(tb) * proc.kernel.rate_cols(x[:, :1])[0, 0] * weight
    log_ratio = torch.log(weight.clamp_min(1.0) * 1.4 / float(base.sum()))
    out = tau_leaping_step(FixedScores(proc, log_ratio), x, t, s, torch.Generator().manual_seed(0),
                           multi_jump=multi_jump)
    lam = base * 1.4 / float(base.sum())
    total = float(lam.sum())
    assert 1.0 < total < 2.0
    move = lam * (math.exp(-total) if multi_jump == "reject" else -math.expm1(-total) / total)
    probs = move.clone()
    probs[0] = 1 - float(move.sum())
    counts = np.bincount(out[0].numpy(), minlength=S0)
    assert scipy.stats.chisquare(counts, probs.numpy() * n).pvalue > 1e-3


def test_tau_leaping_multi_jump_rules_differ_only_where_several_jumps():
    """Both rules draw the same random numbers: 'last' moves every position 'reject' moves, to the same
    state, and moves some more; an unknown rule is refused."""
    from samplers.steps import tau_leaping_step
    proc = ForwardProcess(Geometric(1e-4, 20.0), Uniform(S0))
    model = FixedScores(proc, torch.zeros(S0, dtype=torch.float64))
    x = torch.zeros(4, 500, dtype=torch.long)
    rej = tau_leaping_step(model, x, 0.6, 0.5, torch.Generator().manual_seed(1), multi_jump="reject")
    last = tau_leaping_step(model, x, 0.6, 0.5, torch.Generator().manual_seed(1), multi_jump="last")
    moved = rej != x
    assert torch.equal(last[moved], rej[moved]) and (last != x).sum() > moved.sum()
    with pytest.raises(ValueError, match="multi_jump 'first'"):
        tau_leaping_step(model, x, 0.6, 0.5, torch.Generator().manual_seed(1), multi_jump="first")


def test_the_sampler_registry_answers_scripts_and_matches_the_loop():
    """scripts/common.sh asks `python -m samplers.registry grid NAME`; every sampler with a grid has a step rule
    or an unmasking step in the loop, and calls_per_sequence adds the noise-removal call where the spec says."""
    import subprocess
    import sys

    from conftest import ROOT
    from samplers.loop import calls_per_sequence
    from samplers.registry import SPECS
    from samplers.steps import STEPS

    ask = lambda *a: subprocess.run([sys.executable, "-m", "samplers.registry", *a], cwd=ROOT,  # noqa: E731
                                    capture_output=True, text=True)
    assert ask("grid", "dus").stdout.strip() == "count" and ask("grid", "euler").stdout.strip() == "time"
    bad = ask("grid", "heun")
    assert bad.returncode != 0 and "unknown sampler 'heun'" in bad.stderr
    assert set(STEPS) <= set(SPECS)
    for name, s in SPECS.items():
        assert calls_per_sequence(name, 7) == 7 * s.calls_per_step + s.noise_removal
