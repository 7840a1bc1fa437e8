"""J of the θ-trapezoidal step (jys.rule=sampler, absorbing kernels): its second leap's integrand by hand, the
constant-rate case, the table and the DP, the θ of each step reaching the sampler, the refusals."""
import itertools
import json
import math

import pytest
import torch

from jys.klub import Coarse, extrapolated_terms, klub_terms
from jys.lattice import PathLattice, optimal_grids, stage_point, stage_theta
from jys.schedule import find_schedule, resolve_rule
from models.chains import countdown_chain
from models.kernels import Uniform
from models.oracle import OracleModel
from models.process import make_process
from samplers.loop import run_sampler
from samplers.steps import trapezoid_weights

F64 = torch.float64
PTS = [1.0, 0.8, 0.55, 0.4, 0.2, 1e-3]


def _count_oracle(L: int = 6):
    chain = countdown_chain(4)
    process = make_process({"noise": {"name": "loglinear"}, "kernel": {"name": "absorbing", "num_states": chain.num_states}})
    model = OracleModel(chain, process, floor=1e-3)
    return model, chain.sample(48, L, torch.Generator().manual_seed(0))


def _rates_by_hand(model, x, t):
    """R_t(mask → y) = dσ̄/dt · e^{−σ̄}/(1 − e^{−σ̄}) · p(x0_l = y | x_t) at masked positions, 0 elsewhere. [M, L, S0]"""
    process = model.process
    probs = model(x, t).values.to(F64)[..., : process.data_states]
    sig = process.sigma(t).reshape(-1, 1, 1)
    hazard = process.sigma_rate(t).reshape(-1, 1, 1) * torch.exp(-sig) / -torch.expm1(-sig)
    return torch.where((x == process.kernel.mask).unsqueeze(-1), hazard * probs, 0.0)


def test_second_leap_is_the_girsanov_integrand_of_the_extrapolated_rates_by_hand():
    model, x0 = _count_oracle()
    lat = PathLattice(model, x0, PTS, "tau", seed=1, objective="girsanov", rule="trapezoidal")
    p, r = 0, 4
    m = stage_point(PTS, p, r)
    assert m == 2  # 0.55 is nearest (1 + 0.2)/2 = 0.6
    theta = stage_theta(PTS, p, m, r)
    assert theta == pytest.approx(0.45 / 0.8)
    a1, a2 = trapezoid_weights(theta)
    assert a1 - a2 == pytest.approx(1.0)
    Rm, Rp = _rates_by_hand(model, lat.x[m], lat.t[m]), _rates_by_hand(model, lat.x[p], lat.t[p])
    lam = a1 * Rm - a2 * Rp
    masked_m = (lat.x[m] == model.process.kernel.mask).unsqueeze(-1)
    assert ((lam <= 0) & masked_m & (Rm > 0)).any()  # the clip binds here: the convention below is exercised
    lam = torch.where(lam > 0, lam, Rm)  # where the clip leaves nothing, J reads the midpoint's rate
    got = lat.second_leap(p, r, m)
    assert got.shape == (r - m + 1, len(x0))
    for k, q in enumerate(range(m, r + 1)):
        Rq = _rates_by_hand(model, lat.x[q], lat.t[q])
        terms = torch.where(Rq > 0, Rq * (Rq.clamp_min(1e-300).log() - lam.clamp_min(1e-300).log()), 0.0) - Rq + lam
        want = torch.where(masked_m, terms, 0.0).sum((1, 2))
        assert torch.allclose(got[k], want, rtol=1e-5, atol=1e-9)
    # the step's D: the first leap's path term on (p, m], the second's trapezoid on [m, r]
    second = sum((lat.t[q - 1] - lat.t[q]) * (got[q - 1 - m] + got[q - m]) / 2 for q in range(m + 1, r + 1))
    assert torch.allclose(lat.two_leaps(p, r, m), lat.interval(p, m) + second, rtol=1e-12)
    assert got[0].mean() > 0  # the extrapolation differs from the rate at t_θ already


def test_rates_that_do_not_change_make_the_second_leap_the_first_order_integrand():
    """α1 − α2 = 1: with the same read at the step's start and at t_θ the extrapolation is that read's rates (no clip),
    so the second leap's integrand is the plain KLUB integrand from t_θ."""
    model, x0 = _count_oracle()
    lat = PathLattice(model, x0, PTS, "tau", seed=2, objective="girsanov")
    mid, fines = lat.read(2), [lat.read(3), lat.read(4)]
    for theta in (0.3, 0.5, 0.8):
        got = extrapolated_terms(model.process, mid, mid, fines, theta)
        for k, fine in enumerate(fines):
            want = klub_terms(model.process, mid, model(fine.x, fine.t), fine.x, fine.t, "girsanov", "start")
            assert torch.allclose(got[k], want, rtol=1e-5)


def test_the_table_and_its_dp_take_steps_with_a_point_inside_and_match_grid_value():
    model, x0 = _count_oracle()
    lat = PathLattice(model, x0, PTS, "tau", seed=3, objective="girsanov", rule="trapezoidal")
    D = lat.table()
    P = len(PTS)
    assert all(math.isinf(float(D[a, a + 1])) for a in range(P - 1))
    best = optimal_grids(D, 2)
    for steps in (1, 2):
        brute = min((sum(float(D[a, b]) for a, b in zip((0, *inner), (*inner, P - 1))), (0, *inner, P - 1))
                    for inner in itertools.combinations(range(1, P - 1), steps - 1))
        assert best[steps][1] == pytest.approx(brute[0], rel=1e-12) and tuple(best[steps][0]) == brute[1]
        path = best[steps][0]
        stages = [PTS[stage_point(PTS, a, b)] for a, b in zip(path, path[1:])]
        assert lat.grid_value([PTS[i] for i in path], stages).value == pytest.approx(best[steps][1], rel=1e-12)
    assert 3 not in optimal_grids(D, 3)  # three steps of two points each need seven points
    # a grid whose stage points are not the nearest to the midpoints: J of those leaps
    v = lat.grid_value([1.0, 0.4, 1e-3], stages=[0.8, 0.2])
    assert v.value == pytest.approx(float((lat.two_leaps(0, 3, 1) + lat.two_leaps(3, 5, 4)).mean()), rel=1e-12)
    for bad in (None, [0.8]):
        with pytest.raises(ValueError, match="one stage time per step"):
            lat.grid_value([1.0, 0.4, 1e-3], stages=bad)
    with pytest.raises(ValueError, match="one stage time per step"):
        PathLattice(model, x0, PTS, "tau", seed=3, objective="girsanov").grid_value([1.0, 0.4, 1e-3], [0.8, 0.2])


def test_find_schedule_gives_the_theta_of_each_step():
    model, x0 = _count_oracle()
    sch = find_schedule(model, x0[:16], 2, "trapezoidal", eps=1e-3, lattice=4, rule="sampler")
    assert len(sch.times) == 3 and len(sch.thetas) == 2 and all(0 < th < 1 for th in sch.thetas)
    assert find_schedule(model, x0[:16], 2, "trapezoidal", eps=1e-3, lattice=4).thetas is None  # auto: the first-order J


def test_theta_of_each_step_reaches_the_sampler():
    model, _ = _count_oracle()
    grid = torch.tensor([1.0, 0.6, 0.3, 1e-3], dtype=F64)
    half = run_sampler(model, "trapezoidal", grid, 64, 6, 5, progress=False).samples
    assert torch.equal(run_sampler(model, "trapezoidal", grid, 64, 6, 5, progress=False, thetas=[0.5] * 3).samples, half)
    assert not torch.equal(run_sampler(model, "trapezoidal", grid, 64, 6, 5, progress=False,
                                       thetas=[0.2, 0.7, 0.4]).samples, half)
    for bad, sampler in (([0.5] * 2, "trapezoidal"), ([0.5, 1.0, 0.5], "trapezoidal"), ([0.5] * 3, "euler")):
        with pytest.raises(ValueError, match="thetas"):
            run_sampler(model, sampler, grid, 4, 6, 5, progress=False, thetas=bad)


def test_the_trapezoidal_j_is_for_absorbing_kernels_only():
    uniform = Uniform(4)
    assert resolve_rule("auto", "trapezoidal", uniform) == "none"
    with pytest.raises(ValueError, match="absorbing kernels only"):
        resolve_rule("sampler", "trapezoidal", uniform)
    model, x0 = _count_oracle()
    assert resolve_rule("auto", "trapezoidal", model.process.kernel) == "none"
    assert resolve_rule("sampler", "trapezoidal", model.process.kernel) == "trapezoidal"
    with pytest.raises(ValueError, match="weight"):
        PathLattice(model, x0, PTS, "tau", seed=0, objective="girsanov", weight="suffix", rule="trapezoidal")
    with pytest.raises(ValueError, match="strictly inside"):
        PathLattice(model, x0, PTS, "tau", seed=0, objective="girsanov", rule="trapezoidal").two_leaps(1, 2, 2)
    with pytest.raises(ValueError, match="objective"):
        PathLattice(model, x0, PTS, "tau", seed=0, objective="destination", rule="trapezoidal")
    c = Coarse(x0, torch.ones(len(x0), dtype=F64), torch.zeros(*x0.shape, 4))
    with pytest.raises(ValueError, match="theta"):
        extrapolated_terms(model.process, c, c, [c], 1.0)
    with pytest.raises(ValueError, match="girsanov"):
        extrapolated_terms(model.process, c, c, [c], 0.5, "destination")


def test_the_schedule_file_carries_the_thetas_into_the_samples_key(make_cfg):
    from pipeline.build import build_model
    from pipeline.evaluate import evaluate_schedule
    from pipeline.runs import resolve_schedule, samples_key
    from pipeline.search import optimize_config
    over = ("experiment=count", "model=oracle", "sampler=trapezoidal", "nfe=2", "jys.rule=sampler", "jys.lattice=4",
            "jys.lattice_samples=8")
    cfg = make_cfg(*over)
    model = build_model(cfg)
    rec = json.loads(optimize_config(cfg, model).read_text())
    assert rec["label"] == "jys-rsampler" and rec["rule"] == "trapezoidal" and len(rec["thetas"]) == 2
    assert rec["objective"] == "girsanov"  # auto: the two leaps' bound
    run = make_cfg(*over, "schedule=jys-rsampler")
    _, grid, _, schedule = resolve_schedule(run)
    key = samples_key(run, grid, model, schedule)
    assert key["thetas"] == rec["thetas"] and "thetas" not in samples_key(run, grid, model)
    # the evaluator scores the file's grid with its own stage points: the search's J
    ev = json.loads(evaluate_schedule(run, model).read_text())
    assert ev["thetas"] == rec["thetas"] and ev["J"] == pytest.approx(rec["J"], rel=1e-9)
    # the θ are J of the two leaps': a first-order J of the same file would drop them, so it is refused
    plain = [o for o in over if o != "jys.rule=sampler"]
    with pytest.raises(ValueError, match="two leaps"):
        evaluate_schedule(make_cfg(*plain, "schedule=jys-rsampler"), model)
    with pytest.raises(ValueError, match="hierarchy"):
        optimize_config(make_cfg(*over, "jys.search=hierarchy"), model)
