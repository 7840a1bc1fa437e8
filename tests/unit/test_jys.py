"""The JYS optimizer: KLUB properties, search determinism, nesting, any NFE, resume, bad input."""
import json

import numpy as np
import pytest
import scipy.stats
import torch

from jys import search as search_module
from jys.klub import Coarse, klub_terms
from metrics.sequences import chain_nll, countdown_error
from models.chains import smooth_chain
from models.kernels import Absorbing, GaussianTarget, Uniform
from models.noise import LogLinear
from models.process import ForwardProcess
from models.protocol import ModelOutput, rates_from_ratios
from pipeline.build import build_model
from pipeline.search import optimize_config
from samplers.loop import run_sampler
from samplers.schedules import check_grid, cosine, power, uniform

FAST = ["experiment.length=32", "experiment.data=null", "jys.num_samples=16", "jys.max_iter=12", "jys.search=hierarchy",
        "jys.objective=girsanov"]


def times(path):
    return json.loads(path.read_text())["times"]


def random_ratios(g, shape, x):
    r = torch.rand(*shape, generator=g, dtype=torch.float64) + 0.1
    return r.scatter_(-1, x.unsqueeze(-1), 1.0)  # the ratio at the input token is 1


@pytest.mark.parametrize("kernel", [Absorbing(4), Uniform(4), GaussianTarget(5, rate_sigma=1.5, Q_sigma=2.0)])
def test_klub_terms_are_nonnegative_and_zero_for_equal_rates(kernel):
    proc = ForwardProcess(LogLinear(), kernel)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, kernel.data_states, (64, 6), generator=g)
    t1, t2 = torch.full((64,), 0.8, dtype=torch.float64), torch.full((64,), 0.5, dtype=torch.float64)
    x1, x2 = proc.sample_pair(x0, t1, t2, g)
    assert (x1 != x2).any()
    r1 = random_ratios(g, (64, 6, kernel.num_states), x1)
    r2 = random_ratios(g, (64, 6, kernel.num_states), x2)
    full = klub_terms(proc, Coarse(x1, t1, r1.log().float()), ModelOutput("score", r2.log()), x2, t2, "girsanov")
    assert (full >= -1e-9).all() and full.sum() > 0
    same = klub_terms(proc, Coarse(x1, t1, r1.log().float()), ModelOutput("score", r1.float().double().log()), x1, t1,
                      "girsanov")
    assert torch.allclose(same, torch.zeros(64, dtype=torch.float64), atol=1e-9)  # identical paths


def test_zero_coarse_rate_against_positive_fine_rate_is_reported():
    proc = ForwardProcess(LogLinear(), Absorbing(4))
    x = torch.full((1, 3), 4)
    t = torch.tensor([0.5], dtype=torch.float64)
    r1 = torch.ones(1, 3, 5)
    r1[0, 1, 2] = 0.0
    with pytest.raises(ValueError, match="reverse rates that are 0 at t1"):
        klub_terms(proc, Coarse(x, t, r1.log()), ModelOutput("score", torch.zeros(1, 3, 5)), x, t, "girsanov")


@pytest.mark.parametrize("coarse_state", ["start", "current"])
def test_klub_is_the_kl_of_the_jump_counts_by_displacement(coarse_state):
    """Value test, ordinal kernel: on [t3, t2] the fine path moves token l by d with intensity
    R̂_{t2}(x_{t2,l} → x_{t2,l} + d); the coarse τ-leaping path ('start') with the frozen
    R̂_{t1}(x_{t1,l} → x_{t1,l} + d), or ('current') with the coarse read's rate from the current value.
    The KL between the laws of the jump counts n_{l,d} (independent Poissons), estimated by simulation
    with scipy's log-pmf, must equal the KLUB's integrand times the duration. For 'start', pairing by
    destination instead gives another number."""
    kernel = GaussianTarget(7, rate_sigma=3.0, Q_sigma=4.0)
    proc = ForwardProcess(LogLinear(), kernel)
    x1 = torch.tensor([[3, 2, 3]])
    x2 = torch.tensor([[4, 2, 2]])  # two tokens moved between t1 and t2
    t1, t2, t3 = torch.tensor([0.6], dtype=torch.float64), torch.tensor([0.4], dtype=torch.float64), 0.3
    g = torch.Generator().manual_seed(1)
    y = torch.arange(7)

    def local(x):  # a model that prefers small moves from wherever the token is, with some noise
        return torch.exp(-1.5 * (y - x.unsqueeze(-1)).abs()) * (0.8 + 0.4 * torch.rand(1, 3, 7, generator=g, dtype=torch.float64))

    r1, r2 = local(x1), local(x2)
    r1, r2 = r1 / r1.gather(-1, x1.unsqueeze(-1)), r2 / r2.gather(-1, x2.unsqueeze(-1))
    R1 = rates_from_ratios(r1, x1, t1, proc)[0]
    R2 = rates_from_ratios(r2, x2, t2, proc)[0]
    Q, rate1 = kernel.rate_matrix(), float(proc.sigma_rate(t1))
    lam1, lam2 = [], []  # brute force: every displacement either path can make
    for l in range(3):
        z = int(x2[0, l])
        for d in range(-6, 7):
            a, b = int(x1[0, l]) + d, z + d
            f = float(R2[l, b]) if d and 0 <= b < 7 else 0.0
            c = float(R1[l, a]) if d and 0 <= a < 7 else 0.0
            moved = z != int(x1[0, l])
            if moved and (coarse_state == "current" or (f > 0 and c == 0)):  # the coarse read's rate from z
                c = rate1 * float(Q[b, z] * r1[0, l, b] / r1[0, l, z]) if d and 0 <= b < 7 else 0.0
            if f > 0 or c > 0:
                lam1.append(c)
                lam2.append(f)
    dur = float(t2) - t3
    lam1, lam2 = np.array(lam1) * dur, np.array(lam2) * dur
    rng = np.random.default_rng(0)
    n = rng.poisson(lam2, size=(200_000, len(lam2)))
    llr = scipy.stats.poisson.logpmf(n, lam2) - scipy.stats.poisson.logpmf(n, np.maximum(lam1, 1e-300))
    kl_sim = llr.sum(1).mean()
    klub = dur * float(klub_terms(proc, Coarse(x1, t1, r1.log().float()), ModelOutput("score", r2.float().log()), x2, t2,
                                  "girsanov", coarse_state)[0])
    assert klub == pytest.approx(kl_sim, rel=0.02)
    if coarse_state == "current":
        return
    by_destination = dur * float(klub_terms(ForwardProcess(LogLinear(), _categorical(kernel)), Coarse(x1, t1, r1.log().float()),
                                            ModelOutput("score", r2.float().log()), x2, t2, "girsanov", "start")[0])
    assert by_destination > 2 * kl_sim  # stale destinations look like a different model


def _categorical(kernel):
    """The same rate matrix, read as a categorical kernel (marks paired by destination)."""
    clone = GaussianTarget.__new__(GaussianTarget)
    clone.__dict__.update(kernel.__dict__)
    clone.ordinal = False
    return clone


@pytest.mark.slow
def test_klub_chunks_and_coarse_groups_do_not_change_results(make_cfg, monkeypatch, tmp_path):
    import jys.klub as klub_module
    kernel = Uniform(5)
    proc = ForwardProcess(LogLinear(), kernel)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 5, (16, 40), generator=g)
    t1, t2 = torch.full((16,), 0.7, dtype=torch.float64), torch.full((16,), 0.4, dtype=torch.float64)
    x1, x2 = proc.sample_pair(x0, t1, t2, g)
    args = (proc, Coarse(x1, t1, random_ratios(g, (16, 40, 5), x1).log().float()),
            ModelOutput("score", random_ratios(g, (16, 40, 5), x2).log()), x2, t2, "girsanov")
    whole = klub_terms(*args)
    monkeypatch.setattr(klub_module, "CHUNK_BYTES", 16 * 5 * 8 * 3)  # 3 positions per chunk
    assert torch.allclose(klub_terms(*args), whole, rtol=1e-12)
    one = times(optimize_config(make_cfg(*FAST, "nfe=4", f"runs_dir={tmp_path / 'a'}")))
    grouped = times(optimize_config(make_cfg(*FAST, "nfe=4", f"runs_dir={tmp_path / 'b'}", "jys.max_bytes=1")))
    assert grouped == one  # one interval at a time: same schedule
    straddling = times(optimize_config(make_cfg(*FAST, "nfe=4", f"runs_dir={tmp_path / 'c'}", "jys.batch_size=5")))
    assert straddling == one  # model-call batches that straddle intervals' rows: same schedule


@pytest.mark.slow
def test_fixed_mixing_step_nests_for_any_nfe_and_resumes(make_cfg, tmp_path):
    """count_uniform (t_mix ≈ 0.79 < 1): level 0 is the step 1 → t_mix; NFE 1 … 6 nest, every grid below
    t_mix comes from the search, and a rerun reuses the cached levels."""
    fast = ["experiment=count_uniform", *FAST]
    grids = {n: times(optimize_config(make_cfg(*fast, f"nfe={n}"))) for n in (6, 1, 2, 3, 4, 5)}
    rec = json.loads(next((tmp_path / "count_uniform" / "oracle" / "schedules").glob("*nfe6.json")).read_text())
    t_mix = rec["t_mix"]
    assert 0.7 < t_mix < 0.9
    assert grids[1] == [1.0, 1e-5] and grids[2] == [1.0, t_mix, 1e-5]
    for n, grid in grids.items():
        assert len(grid) == n + 1 and set(grid) <= set(grids[6])
        assert all(t < t_mix for t in grid[2:])  # no point in the mixed region


@pytest.mark.slow
def test_search_is_deterministic_nested_and_any_nfe(make_cfg, tmp_path):
    cfg = make_cfg(*FAST, "nfe=8")
    path8 = optimize_config(cfg)
    t8 = times(path8)
    (tmp_path / "count").rename(tmp_path / "first")
    again = times(optimize_config(make_cfg(*FAST, "nfe=8")))
    assert again == t8  # same seed, same schedule (no cache: the first run was moved away)
    for nfe in (1, 2, 3, 4, 5, 6, 7):
        grid = times(optimize_config(make_cfg(*FAST, f"nfe={nfe}")))
        assert len(grid) == nfe + 1
        check_grid(grid)
        assert set(grid) <= set(t8)  # coarser points never move
    assert set(times(optimize_config(make_cfg(*FAST, "nfe=2")))) <= set(times(optimize_config(make_cfg(*FAST, "nfe=4"))))


@pytest.mark.slow
def test_resumed_search_equals_uninterrupted(make_cfg, tmp_path, monkeypatch):
    straight = times(optimize_config(make_cfg(*FAST, "nfe=8", "runs_dir=" + str(tmp_path / "a"))))
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
        optimize_config(cfg)
    monkeypatch.setattr(search_module.TimeSearch, "level", real)
    levels_run = []
    monkeypatch.setattr(search_module.TimeSearch, "level",
                        lambda self, grid, level: levels_run.append(level) or real(self, grid, level))
    assert times(optimize_config(cfg)) == straight
    assert levels_run == [2]  # levels 0 and 1 came from the state file


def test_kgillespie_search_gives_increasing_counts(make_cfg):
    path = optimize_config(make_cfg(*FAST, "sampler=kgillespie", "nfe=5"))
    rec = json.loads(path.read_text())
    counts = rec["counts"]
    assert len(counts) == 6 and counts[0] == 0 and counts[-1] == 32
    assert all(b > a for a, b in zip(counts, counts[1:]))


def test_bad_input_is_a_clear_error(make_cfg, monkeypatch):
    with pytest.raises(ValueError, match="nfe must be an integer >= 1"):
        optimize_config(make_cfg(*FAST, "nfe=0"))
    with pytest.raises(ValueError, match="unknown sampler 'heun'"):
        optimize_config(make_cfg(*FAST, "sampler=heun"))
    with pytest.raises(ValueError, match=r"eps must lie in \(0, 1\)"):
        optimize_config(make_cfg(*FAST, "eps=1.5"))
    with pytest.raises(ValueError, match="unknown JYS objective 'kl'"):
        optimize_config(make_cfg(*FAST, "jys.objective=kl"))
    from pipeline.experiment import Experiment
    monkeypatch.setattr(Experiment, "draw_x0", lambda self, n, g: torch.randint(0, 40, (n, 32), generator=g))
    with pytest.raises(ValueError, match="the process has 32 data states"):
        optimize_config(make_cfg(*FAST, "nfe=2"))
    monkeypatch.setattr(Experiment, "draw_x0", lambda self, n, g: torch.randint(0, 32, (n, 16), generator=g))
    with pytest.raises(ValueError, match=r"expected \(16, 32\)"):
        optimize_config(make_cfg(*FAST, "nfe=2"))


def _errors(cfg, grids, sampler, metric, num=512):
    model = build_model(cfg)
    chain = model.data_chain
    out = {}
    for name, grid in grids.items():
        res = run_sampler(model, sampler, grid, num, int(cfg.experiment.length), torch.Generator().manual_seed(1),
                          batch_size=num, progress=False)
        out[name] = metric(res.samples, chain)
    return out


@pytest.mark.slow
def test_jys_beats_uniform_and_cosine_on_the_countdown_oracle(make_cfg):
    """A small version of the README's check: Euler, NFE 4, error at most 0.7 × uniform's and below cosine's."""
    cfg = make_cfg("experiment.length=64", "experiment.data=null", "jys.num_samples=32", "nfe=4")
    jys_grid = torch.tensor(times(optimize_config(cfg)), dtype=torch.float64)
    errors = _errors(cfg, {"uniform": uniform(4), "cosine": cosine(4), "jys": jys_grid}, "euler",
                     lambda x, chain: countdown_error(x))
    assert errors["jys"] <= 0.7 * errors["uniform"] and errors["jys"] < errors["cosine"], errors


@pytest.mark.slow
def test_jys_beats_uniform_under_the_uniform_kernel(make_cfg):
    """count_uniform_const (tauLDR's constant-rate uniform kernel), Euler, NFE 4, chain NLL."""
    cfg = make_cfg("experiment=count_uniform_const", "experiment.length=32", "experiment.data=null",
                   "jys.num_samples=32", "nfe=4")
    jys_grid = torch.tensor(times(optimize_config(cfg)), dtype=torch.float64)
    nll = _errors(cfg, {"uniform": uniform(4), "jys": jys_grid}, "euler", lambda x, c: chain_nll(x, c, 1e-3))
    assert nll["jys"] <= 0.7 * nll["uniform"], nll


@pytest.mark.slow
@pytest.mark.parametrize("search", ["auto", "hierarchy"])
def test_jys_beats_uniform_under_the_gaussian_kernel(make_cfg, tmp_path, search):
    """chain_gauss (tauLDR's Gaussian kernel and exponential noise) on a smooth chain, τ-leaping, NFE 4: the default
    (J's lattice optimum on the frozen-denoiser path, no t_mix) and the published search (one step to t_mix, searched
    below it) each give chain NLL at most 0.7 × uniform's."""
    smooth_chain().save(tmp_path / "chain.npz")
    cfg = make_cfg("experiment=chain_gauss", f"oracle.chain_file={tmp_path / 'chain.npz'}", "experiment.length=16",
                   "sampler=tau_leaping", "eps=0.01", "jys.num_samples=32", "jys.lattice_samples=32", "nfe=4",
                   f"jys.search={search}")
    rec = json.loads(optimize_config(cfg).read_text())
    if search == "hierarchy":
        assert rec["times"][1] == pytest.approx(rec["t_mix"]) and rec["t_mix"] < 0.5
    else:
        assert rec["search"] == "lattice" and "t_mix" not in rec
    grid = torch.tensor(rec["times"], dtype=torch.float64)
    nll = _errors(cfg, {"uniform": uniform(4, 0.01), "jys": grid}, "tau_leaping", lambda x, c: chain_nll(x, c, 1e-3))
    assert nll["jys"] <= 0.7 * nll["uniform"], nll


def test_power_grid_closed_form():
    """t_i = 1 − (1 − ε)(i/N)^q: q = 1 is the uniform grid; q < 1 leaps further from t = 1 on its first step."""
    assert torch.allclose(power(4, 1.0, 0.01), uniform(4, 0.01))
    assert torch.allclose(power(4, 0.5, 1e-3), torch.tensor([1.0, 1 - 0.999 * 0.5, 1 - 0.999 * 0.5 ** 0.5,
                                                                  1 - 0.999 * 0.75 ** 0.5, 1e-3], dtype=torch.float64))
    with pytest.raises(ValueError):
        power(0, 0.5)
