"""The JYS optimizer: KLUB properties, search determinism, nesting, any NFE, resume, bad input."""
import json

import pytest
import torch

from jys import search as search_module
from jys.klub import klub_terms
from jys.run import optimize
from metrics.sequences import countdown_error
from models.kernels import Absorbing, Uniform
from models.noise import LogLinear
from models.process import ForwardProcess
from pipeline.build import build_model
from samplers.loop import run_sampler
from samplers.schedules import check_grid, uniform

FAST = ["experiment.length=32", "experiment.data=null", "jys.num_samples=16", "jys.max_iter=12"]


def times(path):
    return json.loads(path.read_text())["times"]


@pytest.mark.parametrize("kernel", [Absorbing(4), Uniform(4)])
def test_klub_terms_are_nonnegative_and_zero_for_equal_rates(kernel):
    proc = ForwardProcess(LogLinear(), kernel)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 4, (64, 6), generator=g)
    t1, t2 = torch.full((64,), 0.8, dtype=torch.float64), torch.full((64,), 0.5, dtype=torch.float64)
    x1, x2 = proc.sample_pair(x0, t1, t2, g)
    r1 = torch.rand(64, 6, kernel.num_states, generator=g, dtype=torch.float64) + 0.1
    r2 = torch.rand(64, 6, kernel.num_states, generator=g, dtype=torch.float64) + 0.1
    for r in (r1, r2):
        r.scatter_(-1, x0.new_zeros(64, 6, 1), 1.0)
    full = klub_terms(proc, r1, x1, t1, r2, x2, t2, "girsanov")
    assert (full >= -1e-12).all() and full.sum() > 0
    same = klub_terms(proc, r1, x1, t1, r1, x1, t1, "girsanov")  # identical paths: no divergence
    assert torch.allclose(same, torch.zeros(64, dtype=torch.float64), atol=1e-12)


def test_zero_coarse_rate_against_positive_fine_rate_is_reported():
    proc = ForwardProcess(LogLinear(), Absorbing(4))
    x = torch.full((1, 3), 4)
    t = torch.tensor([0.5], dtype=torch.float64)
    r1 = torch.ones(1, 3, 5, dtype=torch.float64)
    r1[0, 1, 2] = 0.0
    with pytest.raises(ValueError, match="reverse rates that are 0 at t1"):
        klub_terms(proc, r1, x, t, torch.ones_like(r1), x, t, "girsanov")


def test_search_is_deterministic_nested_and_any_nfe(make_cfg, tmp_path):
    cfg = make_cfg(*FAST, "nfe=8")
    path8 = optimize(cfg)
    t8 = times(path8)
    (tmp_path / "count").rename(tmp_path / "first")
    again = times(optimize(make_cfg(*FAST, "nfe=8")))
    assert again == t8  # same seed, same schedule (no cache: the first run was moved away)
    for nfe in (1, 2, 3, 4, 5, 6, 7):
        grid = times(optimize(make_cfg(*FAST, f"nfe={nfe}")))
        assert len(grid) == nfe + 1
        check_grid(grid)
        assert set(grid) <= set(t8)  # coarser points never move
    assert set(times(optimize(make_cfg(*FAST, "nfe=2")))) <= set(times(optimize(make_cfg(*FAST, "nfe=4"))))


def test_resumed_search_equals_uninterrupted(make_cfg, tmp_path, monkeypatch):
    straight = times(optimize(make_cfg(*FAST, "nfe=8", "runs_dir=" + str(tmp_path / "a"))))
    real = search_module.TimeSearch.level
    calls = {"n": 0}

    def dies_at_third_level(self, grid, level):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(self, grid, level)

    monkeypatch.setattr(search_module.TimeSearch, "level", dies_at_third_level)
    cfg = make_cfg(*FAST, "nfe=8", "runs_dir=" + str(tmp_path / "b"))
    with pytest.raises(KeyboardInterrupt):
        optimize(cfg)
    monkeypatch.setattr(search_module.TimeSearch, "level", real)
    levels_run = []
    monkeypatch.setattr(search_module.TimeSearch, "level",
                        lambda self, grid, level: levels_run.append(level) or real(self, grid, level))
    assert times(optimize(cfg)) == straight
    assert levels_run == [2]  # levels 0 and 1 came from the state file


def test_kgillespie_search_gives_increasing_counts(make_cfg):
    path = optimize(make_cfg(*FAST, "sampler=kgillespie", "nfe=5"))
    rec = json.loads(path.read_text())
    counts = rec["counts"]
    assert len(counts) == 6 and counts[0] == 0 and counts[-1] == 32
    assert all(b > a for a, b in zip(counts, counts[1:]))


def test_bad_input_is_a_clear_error(make_cfg, monkeypatch):
    with pytest.raises(ValueError, match="nfe must be an integer >= 1"):
        optimize(make_cfg(*FAST, "nfe=0"))
    with pytest.raises(ValueError, match="unknown sampler 'heun'"):
        optimize(make_cfg(*FAST, "sampler=heun"))
    with pytest.raises(ValueError, match=r"eps must lie in \(0, 1\)"):
        optimize(make_cfg(*FAST, "eps=1.5"))
    with pytest.raises(ValueError, match="unknown JYS objective 'kl'"):
        optimize(make_cfg(*FAST, "jys.objective=kl"))
    import jys.run as run_module
    monkeypatch.setattr(run_module, "sample_data", lambda cfg, n, g: torch.randint(0, 40, (n, 32), generator=g))
    with pytest.raises(ValueError, match="the model has 32 data states"):
        optimize(make_cfg(*FAST, "nfe=2"))
    monkeypatch.setattr(run_module, "sample_data", lambda cfg, n, g: torch.randint(0, 32, (n, 16), generator=g))
    with pytest.raises(ValueError, match=r"expected \(16, 32\)"):
        optimize(make_cfg(*FAST, "nfe=2"))


def test_jys_beats_uniform_on_the_countdown_oracle(make_cfg):
    """A small version of the README's check: Euler, NFE 4, error at most 0.7 × uniform's."""
    cfg = make_cfg("experiment.length=64", "experiment.data=null", "jys.num_samples=32", "nfe=4")
    jys_grid = torch.tensor(times(optimize(cfg)), dtype=torch.float64)
    model = build_model(cfg)
    errors = {}
    for name, grid in (("uniform", uniform(4)), ("jys", jys_grid)):
        res = run_sampler(model, "euler", grid, 512, 64, torch.Generator().manual_seed(1), batch_size=512,
                          progress=False)
        errors[name] = countdown_error(res.samples)
    assert errors["jys"] <= 0.7 * errors["uniform"], errors
