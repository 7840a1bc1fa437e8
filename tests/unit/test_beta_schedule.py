"""The Beta mask schedule (arXiv 2509.13866) and its 2-D search on J (jys.search=beta, schedule=beta)."""
import dataclasses
import json
import math

import pytest
import torch

from models.noise import LogLinear
from models.kernels import Absorbing
from models.process import ForwardProcess
import pipeline.search
from pipeline.search import grid_objective, lattice_points, optimize_config, settings_from
from pipeline.experiment import experiment_of
from pipeline.build import build_model
from samplers.schedules import beta, beta_mask_schedule

F64 = torch.float64


def test_beta_mask_schedule_closed_forms():
    """The paper's Proposition 3.7: Beta(½, ½) gives the linear schedule α = τ, Beta(1, 1) gives sin²(πτ/2)."""
    tau = torch.linspace(0, 1, 11, dtype=F64)
    assert torch.allclose(beta_mask_schedule(tau, 0.5, 0.5), tau, atol=1e-12)
    assert torch.allclose(beta_mask_schedule(tau, 1.0, 1.0), torch.sin(math.pi * tau / 2) ** 2, atol=1e-12)
    with pytest.raises(ValueError, match="a > 0 and b > 0"):
        beta_mask_schedule(tau, 0.0, 1.0)


def test_beta_grid_keeps_the_schedule():
    """At every inner step the process keeps a token unmasked with chance α(i/N); the grid runs from 1 to ε."""
    process = ForwardProcess(LogLinear(), Absorbing(4))
    grid = beta(8, 0.3, 0.9, process, 1e-3)
    keep = torch.exp(-process.sigma(grid[1:-1]))
    want = beta_mask_schedule(torch.arange(1, 8, dtype=F64) / 8, 0.3, 0.9)
    assert torch.allclose(keep, want, atol=1e-12)
    assert grid[0] == 1.0 and grid[-1] == 1e-3 and (grid[1:] < grid[:-1]).all()
    with pytest.raises(ValueError, match="absorbing kernel"):
        from models.kernels import Uniform
        beta(8, 0.5, 0.5, ForwardProcess(LogLinear(), Uniform(4)), 1e-3)


@pytest.mark.slow
def test_beta_search_takes_the_pair_of_least_J(make_cfg, tmp_path, monkeypatch):
    """jys.search=beta on the CountDown oracle: the schedule is the scored pair of least J, its J is the grid's J
    scored alone, a rerun reuses the scores, and schedule=beta samples it. The shared reads keep the base lattice
    only: a pair's own points are dropped once it is scored."""
    cfg = make_cfg("experiment=count", "experiment.length=16", "experiment.data=null", "sampler=euler", "nfe=3",
                   "jys.search=beta", "jys.lattice=8", "jys.lattice_samples=8")
    held = []

    def scored(experiment, model, settings, sampler, grid, nfe, reads=None):
        held.append(len(reads))  # reads kept from earlier pairs when this one starts
        return grid_objective(experiment, model, settings, sampler, grid, nfe, reads)

    monkeypatch.setattr(pipeline.search, "grid_objective", scored)
    path = optimize_config(cfg)
    base = lattice_points(8, 16, build_model(cfg).process, "tau", float(cfg.eps), 3)
    assert 0 < max(held) <= len(base)
    rec = json.loads(path.read_text())
    assert path.name == "euler-beta-nfe3.json" and rec["search"] == "beta"
    scores = json.loads((tmp_path / "count" / "oracle" / "schedules" / "search").glob("beta-*.json").__next__()
                        .read_text())["scores"]
    assert len(scores) == rec["pairs_scored"] > 50
    best = min(scores, key=lambda c: c["J"])
    assert (rec["a"], rec["b"]) == (best["a"], best["b"]) and rec["times"] == pytest.approx(best["times"])
    experiment, model = experiment_of(cfg), build_model(cfg)
    # the Beta search scores its grids (at ε) on the nfe-step lattice: jys.end=eps's reading
    alone = grid_objective(experiment, model, dataclasses.replace(settings_from(cfg), end="eps"), "euler",
                           torch.tensor(rec["times"], dtype=F64), 3)
    assert alone["J"] == pytest.approx(rec["J"], rel=1e-9)
    assert json.loads(optimize_config(cfg).read_text())["times"] == rec["times"]
