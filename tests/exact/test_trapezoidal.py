"""The θ-trapezoidal step (samplers.steps.trapezoidal_step) on a problem small enough to know every law exactly:
two positions of the tiny 3-state chain under an absorbing kernel, one step from the all-masked sequence. The
step's law is computed by enumerating its intermediate state (every y* of stage 1, then stage 2's jumps from it);
the implementation matches that law (chi-square), and its distance to the exact reverse transition falls with the
step size one power faster than τ-leaping's (a second-order method: local error O(Δ³) against O(Δ²)) where the
extrapolated intensities stay positive; where they are clipped, the order is lost."""
import itertools
import math

import numpy as np
import pytest
import scipy.stats
import torch

from conftest import S0, tiny_chain
from models.kernels import Absorbing, Uniform
from models.noise import LogLinear
from models.oracle import OracleModel
from models.process import ForwardProcess
from samplers.loop import CountingModel, run_sampler
from samplers.schedules import uniform
from samplers.steps import _rates, trapezoidal_step

MASK = S0
STATES = S0 + 1  # a position's values: the data states and MASK
OUTCOMES = [list(o) for o in itertools.product(range(STATES), repeat=2)]  # every sequence of 2 positions


def oracle(floor: float = 0.05):
    return OracleModel(tiny_chain(), ForwardProcess(LogLinear(), Absorbing(S0)), floor=floor)


def exact_law(model, t: float, s: float) -> torch.Tensor:
    """p(x_s | x_t = all masked) [16]: Σ_{x0} p(x0) Π_l q(x_s,l | MASK, x0_l) (the forward bridge factorizes given
    x0; from all-masked, p(x0 | x_t) is the oracle's law of x0)."""
    proc = model.process
    a_t, a_s = (math.exp(-float(proc.sigma(torch.tensor([v], dtype=torch.float64)))) for v in (t, s))
    reveal, stay = (a_s - a_t) / (1 - a_t), (1 - a_s) / (1 - a_t)
    x0 = torch.tensor([[a, b] for a in range(S0) for b in range(S0)])
    p0 = model.chain.log_prob(x0).exp()
    law = torch.zeros(STATES ** 2, dtype=torch.float64)
    for out in OUTCOMES:
        per = [(stay if v == MASK else reveal * (x0[:, i] == v).double()) for i, v in enumerate(out)]
        law[out[0] * STATES + out[1]] = float((p0 * per[0] * per[1]).sum())
    return law


def jump_law(lam: torch.Tensor, x: torch.Tensor, states: int = STATES, rule: str = "last") -> torch.Tensor:
    """The law of one categorical Poisson-mark step from one sequence x [2] with intensities lam [2, S] (the step
    folded in), positions independent: 'last' jumps with probability 1 − e^{−Λ_l} to y ∝ λ_{l,y}; 'reject' moves
    to y with probability λ_{l,y} e^{−Λ_l} and stays otherwise. [states²]"""
    per = []
    for i in range(2):
        total = float(lam[i].sum())
        p = torch.zeros(states, dtype=torch.float64)
        if total > 0:
            p[: lam.shape[1]] += lam[i] * (-math.expm1(-total) / total if rule == "last" else math.exp(-total))
        p[int(x[i])] += 1 - float(p.sum())
        per.append(p)
    return torch.outer(per[0], per[1]).reshape(-1)


def tau_leaping_law(model, t: float, s: float) -> torch.Tensor:
    x = torch.full((1, 2), MASK)
    return jump_law((t - s) * _rates(model, x, t)[0], x[0])


def trapezoidal_law(model, t: float, s: float, theta: float = 0.5, x: torch.Tensor | None = None,
                    rule: str = "last") -> torch.Tensor:
    """Stage 1 (τ-leaping over θΔ) to every y*, then stage 2 from y* with (α1 R̂(y*, t_θ) − α2 R̂(x, t))₊ over
    (1 − θ)Δ, paired by destination: the rule of samplers.steps.trapezoidal_step for categorical kernels written
    out over all intermediate states. x: the start [1, 2] (default all masked)."""
    states = model.process.num_states
    x = torch.full((1, 2), MASK) if x is None else x
    dt = t - s
    a1 = 1 / (2 * theta * (1 - theta))
    a2 = ((1 - theta) ** 2 + theta ** 2) / (2 * theta * (1 - theta))
    r0 = _rates(model, x, t)[0]
    first = jump_law(theta * dt * r0, x[0], states, rule)
    ys = torch.tensor(list(itertools.product(range(states), repeat=2)))
    r1 = _rates(model, ys, t - theta * dt)  # [states², 2, S]
    law = torch.zeros(states ** 2, dtype=torch.float64)
    for k, y in enumerate(ys):
        if first[k] > 0:
            law += first[k] * jump_law((1 - theta) * dt * (a1 * r1[k] - a2 * r0).clamp(min=0), y, states, rule)
    return law


@pytest.mark.parametrize("kernel,start,theta,rule", [
    ("absorbing", None, 0.5, "last"), ("absorbing", None, 1 / 3, "reject"),
    ("uniform", [0, 2], 0.5, "reject"), ("uniform", [1, 1], 0.3, "last")])
def test_the_step_draws_the_law_written_out(kernel, start, theta, rule):
    model = oracle() if kernel == "absorbing" else OracleModel(tiny_chain(), ForwardProcess(LogLinear(), Uniform(S0)),
                                                               floor=0.05)
    states, t, s, n = model.process.num_states, 0.7, 0.35, 40000
    x = torch.full((1, 2), MASK) if start is None else torch.tensor([start])
    out = trapezoidal_step(model, x.expand(n, 2).clone(), t, s, torch.Generator().manual_seed(0), theta=theta,
                           multi_jump=rule)
    law = trapezoidal_law(model, t, s, theta, x, rule)
    assert abs(float(law.sum()) - 1) < 1e-12
    counts = np.bincount((out[:, 0] * states + out[:, 1]).numpy(), minlength=states ** 2)
    keep = law.numpy() > 0
    assert counts[~keep].sum() == 0
    assert scipy.stats.chisquare(counts[keep], law.numpy()[keep] * n).pvalue > 1e-3


def test_the_second_call_sees_the_held_prefix():
    """hold() puts the prefix back into y* before the midpoint call (the loop holds the final state too); under a
    uniform kernel stage 1 moves the first position of most rows over this long step, so without it the check fails."""
    model, seen = OracleModel(tiny_chain(), ForwardProcess(LogLinear(), Uniform(S0)), floor=0.05), []

    class Watch:
        process = model.process

        def __call__(self, x, t):
            seen.append(x.clone())
            return model(x, t)

    x = torch.tensor([[1, 0]] * 64)
    free = trapezoidal_step(Watch(), x, 0.9, 0.1, torch.Generator().manual_seed(0))
    assert (seen[1][:, 0] != 1).any()  # the step moves it when nothing holds it
    seen.clear()
    trapezoidal_step(Watch(), x, 0.9, 0.1, torch.Generator().manual_seed(0),
                     hold=lambda y: torch.cat([x[:, :1], y[:, 1:]], 1))
    assert len(seen) == 2 and (seen[1][:, 0] == 1).all() and free.shape == x.shape


def slope(steps, errors) -> float:
    return float(np.polyfit(np.log(steps), np.log(errors), 1)[0])


def local_errors(model, t: float, steps: list[float]) -> dict[str, list[float]]:
    tv = {"tau": [], "trap": []}
    for dt in steps:
        exact = exact_law(model, t, t - dt)
        tv["tau"].append(0.5 * float((tau_leaping_law(model, t, t - dt) - exact).abs().sum()))
        tv["trap"].append(0.5 * float((trapezoidal_law(model, t, t - dt) - exact).abs().sum()))
    return tv


def test_its_local_error_falls_one_order_faster_than_tau_leaping():
    """TV(one step's law, exact) from t = 0.6 over Δ = 0.08 … 0.01, on the chain mixed half with uniform (weak
    dependence between the two positions): τ-leaping's falls as Δ², the θ-trapezoidal step's as Δ³ (log-log
    slopes), and it is the smaller at every Δ."""
    steps = [0.08, 0.04, 0.02, 0.01]
    tv = local_errors(oracle(floor=0.5), 0.6, steps)
    assert 1.8 < slope(steps, tv["tau"]) < 2.2
    assert 2.8 < slope(steps, tv["trap"]) < 3.2
    assert all(a < b for a, b in zip(tv["trap"], tv["tau"]))


def test_clipping_costs_the_order_where_a_neighbour_halves_a_rate():
    """On the strongly dependent chain (floor 0.05: one transition nearly forbidden), revealing one position can
    cut another's rate to a token by half or more, where the extrapolation 2R̂(y*) − R̂(x) (θ = ½) is negative and
    the step clips it to 0, as the paper's algorithm does: the local error then falls as Δ² only, like
    τ-leaping's, though still below it."""
    steps = [0.08, 0.04, 0.02, 0.01]
    tv = local_errors(oracle(floor=0.05), 0.6, steps)
    assert 1.8 < slope(steps, tv["trap"]) < 2.3
    assert all(a < b for a, b in zip(tv["trap"], tv["tau"]))


def test_two_model_calls_per_step_and_the_theta_is_checked():
    from samplers.loop import calls_per_sequence

    counting = CountingModel(oracle())
    res = run_sampler(counting, "trapezoidal", uniform(3, 1e-3), 8, 2, torch.Generator().manual_seed(0), progress=False)
    assert res.calls_per_batch == [calls_per_sequence("trapezoidal", 3)] == [7]  # 3 steps × 2 + noise removal
    with pytest.raises(ValueError, match=r"theta must lie in \(0, 1\)"):
        trapezoidal_step(oracle(), torch.full((1, 2), MASK), 0.5, 0.4, torch.Generator(), theta=1.0)


def _kl(p: torch.Tensor, q: torch.Tensor) -> float:
    keep = p > 0
    return float((p[keep] * (p[keep] / q[keep]).log()).sum())


def test_j_of_the_two_leaps_bounds_the_step_where_no_clip_binds_but_charges_the_first_leap_whole():
    """J of the θ-trapezoidal step (jys.rule=sampler: the chain rule over the process's x_{t_θ}, each leap's Girsanov
    path KL; jys.lattice.PathLattice.two_leaps) against the exact KL of the step's law: one step 1 → 0.5 through
    t_θ = 0.75 (floor 0.5, so no extrapolated rate clips: checked; multi_jump=last, the literal τ-leap whose path the
    Girsanov term measures), J on a lattice of 41 points and 4,000 sequences. At t = 1 every x_t but the all-masked
    one has probability below 2e-3, so the exact side starts there. J bounds the KL and is below the first-order J of
    the same step, but the first leap's own KL (a τ-leap over θΔ, which the bound charges in full) is already
    several times the whole step's: the second leap's correction of it is what the bound cannot see."""
    from jys.lattice import PathLattice, stage_point, stage_theta
    model = oracle(floor=0.5)
    ys = torch.tensor(OUTCOMES)
    r0 = _rates(model, torch.full((1, 2), MASK), 1.0)[0]
    assert ((2 * _rates(model, ys, 0.75) - r0 > 0) | (_rates(model, ys, 0.75) == 0)).all()  # θ = ½: nothing clips
    pts = [round(1.0 - 0.0125 * i, 12) for i in range(41)]
    x0 = model.chain.sample(4000, 2, torch.Generator().manual_seed(0))
    lat = PathLattice(model, x0, pts, "tau", seed=0, objective="girsanov", rule="trapezoidal")
    assert stage_point(pts, 0, 40) == 20 and stage_theta(pts, 0, 20, 40) == pytest.approx(0.5)
    d = lat.two_leaps(0, 40, 20)
    J, se = float(d.mean()), float(d.std() / math.sqrt(len(d)))
    exact = _kl(exact_law(model, 1.0, 0.5), trapezoidal_law(model, 1.0, 0.5, 0.5, rule="last"))
    assert 0 < exact <= J + 3 * se, (exact, J, se)
    assert J < float(lat.interval(0, 40).mean())  # the first-order J of the whole step
    first_leap = _kl(exact_law(model, 1.0, 0.75), jump_law(0.25 * r0, torch.full((2,), MASK)))
    assert first_leap > 3 * exact
