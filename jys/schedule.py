"""JYS on a model of your own, from Python: no experiment, no config, no files.

    from jys.schedule import find_schedule
    schedule = find_schedule(model, x0, nfe=8, sampler="euler")   # schedule.times: 1 = t_0 > … > t_N
    samples = run_sampler(model, "euler", schedule.times, 64, x0.shape[1], seed).samples

`model` follows the model protocol (models/protocol.py): a callable (x_t [B, L] long, t [B] float) ->
ModelOutput('score' | 'denoiser', values) with an attribute `process` (models.process.make_process builds one from
names: noise loglinear/geometric/exponential/constant, kernel absorbing/uniform/gaussian). `x0` [M, L] are data
sequences: the forward paths J is estimated on. The grid is J's exact optimum over the lattice (jys.lattice), the
search `python -m jys` runs by default for every kernel (docs/method.md, "The grid objective J and its exact
optimum"); `python -m jys` adds caching, resuming, the count-grid samplers and the hierarchical search."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from jys.klub import resolve_objective
from jys.lattice import PathLattice, base_lattice, check_weight, lattice_size, optimal_grids, stage_point, stage_theta
from models.protocol import output_of
from samplers.registry import SPECS, spec

TIME_GRID = tuple(n for n, s in SPECS.items() if s.grid == "time")  # euler, tau_leaping, tweedie, trapezoidal, remdm
RULES = ("auto", "none", "sampler")
ENDS = ("auto", "eps", "denoise")
DENOISE_STEP = ("euler", "tau_leaping", "tweedie")  # one model call per step, like the noise removal's one


def resolve_end(end: str, sampler: str, final_step: str = "sample", refine: str = "none") -> str:
    """Where a grid of `nfe` steps ends, jys.end. 'eps' (the published): at ε, where the noise-removal call reads the
    model once more and removes what noise is left, next to nothing. 'denoise': that call is one of the grid's steps,
    the last: J's optimum over nfe + 1 steps to ε, whose last step t_nfe → ε is made by the noise removal's draw from
    p(x_0 | x_{t_nfe}) at t_nfe instead of by the sampler (same model calls). J charges that step as the sampler's
    own step to ε: the draw takes each token from the denoiser's law, the one the frozen-denoiser path reaches, where
    the sampler's step law linearizes the rates (Euler, τ-leaping) and, under absorbing kernels, is the same draw.
    It does not charge the draw's path term alone, which underrates long jumps (docs/method.md). 'auto': denoise
    for euler, tau_leaping and tweedie when the noise removal draws (final_step=sample) and J's grid is not refined
    (jys.refine reads the sampler's own steps), else eps."""
    if end not in ENDS:
        raise ValueError(f"unknown jys.end {end!r}; expected one of {ENDS}")
    applies = sampler in DENOISE_STEP and final_step == "sample" and refine == "none"
    if end == "denoise" and not applies:
        raise ValueError(f"jys.end=denoise makes the noise-removal draw the grid's last step: for {DENOISE_STEP} with "
                         f"final_step=sample and jys.refine=none; got sampler={sampler}, final_step={final_step}, "
                         f"jys.refine={refine}")
    return ("denoise" if applies else "eps") if end == "auto" else end


def resolve_weight(weight: str, rule: str, kernel, output: str | None, end: str) -> str:
    """jys.weight for J (jys.lattice): 'auto' is 'marginal' where J carries Euler's one-step term (rule 'euler': uniform
    and ordinal kernels), the model gives a denoiser (models.protocol.output_of) and the noise-removal draw makes the
    grid's last step (`end` resolved: 'denoise'), else 'none'. Why Euler alone: its step clips the stay probability
    at 0 once rate × length passes 1, and the plain term charges every token so moved although, where the kernel has
    mixed, each value leads to the same sample; the marginal term (the law of each token given its context, averaged
    over its own value) does not charge that. With the draw as the last step it gave JYS the lowest bigram TV of every
    fixed grid at every budget on count_uniform, count_uniform_const and chain_gauss and the lowest chain NLL but in
    one cell (chain_gauss at 32 calls, 1.001x the best power grid's); with the grid at ε it lost at 4 calls, so
    'none' there (docs/results/jys.md). Under τ-leaping's reject rule a token keeps its value through a step, the
    coupling the average drops: on the folk twin it left J's ranking nearly unrelated to the samples' (ρ 0.08 at 16
    calls), so 'none'. Absorbing kernels have no one-step term (rule 'none')."""
    check_weight(weight)
    if weight != "auto":
        return weight
    return "marginal" if rule == "euler" and kernel.mask is None and output == "denoiser" and end == "denoise" \
        else "none"


def dp_steps(nfe: int, end: str) -> int:
    """The steps of J's DP for a grid of `nfe` steps: one more under jys.end=denoise (the noise removal's, dropped from
    the written grid with ε), else nfe."""
    return nfe + 1 if end == "denoise" else nfe


def charged_times(times: list[float], eps: float, end: str) -> list[float]:
    """The times J reads a grid on: under jys.end=denoise a grid whose last time is above ε gets ε appended (its
    noise-removal call charged as the sampler's step to ε, resolve_end); a grid at ε is read as it is."""
    return [*times, eps] if end == "denoise" and times[-1] > eps else list(times)


def resolve_rule(rule: str, sampler: str, kernel, multi_jump: str = "reject") -> str:
    """J's one-step term (jys.klub.step_terms) for `sampler`: 'sampler' gives J that sampler's own one-step error,
    'none' leaves it out; 'auto' the sampler's for uniform kernels and for Euler under ordinal ones, none for absorbing
    ones (Euler and Tweedie unmask each token with the step's exact law there; tested) and for τ-leaping under ordinal
    ones (its law, summed clamped moves, is derived and selectable, but it made J's optimum worse on chain_gauss at
    every budget and costs an FFT per lattice pair: docs/results/jys.md). Count-grid samplers time their steps exactly: none. The
    θ-trapezoidal step: 'sampler' is J of its two leaps (jys.lattice, 'trapezoidal'), derived for absorbing kernels only;
    'auto' gives it none (the first-order path's J)."""
    if rule not in RULES:
        raise ValueError(f"unknown jys.rule {rule!r}; expected one of {RULES}")
    own = spec(sampler).step_rule  # None: count grids time their steps exactly; ReMDM's is not derived
    if rule == "auto":
        rule = "none" if kernel.mask is not None or (kernel.ordinal and sampler != "euler") or own == "trapezoidal" \
            else "sampler"
    if rule == "sampler" and own == "trapezoidal" and kernel.mask is None:
        raise ValueError("jys.rule=sampler for sampler=trapezoidal is J of its two leaps, derived for absorbing kernels "
                         f"only (this kernel is {type(kernel).__name__}); use jys.rule=none, the first-order path's J")
    if rule == "none" or own is None:
        return "none"
    return f"{own}_last" if own == "tau_leaping" and multi_jump == "last" else own


def lattice_table(model, x0: torch.Tensor, points: list, family: str, *, seed: int, objective: str,
                  coarse_state: str = "auto", weight: str = "none", rule: str = "none", prefix: int = 0,
                  batch_size: int = 512, progress: bool = False, base_points: int = 32,
                  max_span: int | None = None) -> tuple[torch.Tensor, int]:
    """D [P, P] over the lattice's pairs of points (PathLattice.table) and the model calls it took."""
    lat = PathLattice(model, x0, points, family, seed, objective, coarse_state, weight, prefix=prefix,
                      batch_size=batch_size, progress=progress, base_points=base_points, rule=rule)
    return lat.table(max_span=max_span), lat.calls


def lattice_span(nfe: int, lattice: int, points: int) -> int | None:
    """A lattice grown for this NFE (lattice_size > lattice) serves it alone: its steps span a few points, so pairs
    farther apart than 4 steps' worth are not computed, except from the first point (PathLattice.table)."""
    return None if lattice_size(lattice, nfe) <= lattice else math.ceil(4 * points / nfe)


@dataclass
class Schedule:
    times: torch.Tensor  # [nfe + 1] float64, 1 = t_0 > … > t_nfe (eps, or above it under jys.end=denoise)
    J: float  # J of this grid on the lattice (its estimate of the grid's divergence; with ε appended under 'denoise')
    model_calls: int  # the model calls the search took
    thetas: list[float] | None = None  # the θ-trapezoidal step's θ of each step (rule 'trapezoidal'); else None


def objective_for(objective: str, kernel, rule: str) -> str:
    """jys.objective resolved for J with this step rule: the θ-trapezoidal step's two leaps take 'girsanov' (their
    bound; 'destination' leaves out the total rate that the extrapolation corrects), the rest resolve_objective's."""
    if rule == "trapezoidal" and objective == "auto":
        return "girsanov"
    return resolve_objective(objective, kernel)


def best_grid(D: torch.Tensor, nfe: int) -> tuple[list[int], float]:
    """The lattice path of `nfe` steps that minimizes J (optimal_grids), refused where no such path exists (a
    θ-trapezoidal step spans at least two points)."""
    found = optimal_grids(D, nfe)
    if nfe not in found:
        raise ValueError(f"no grid of {nfe} steps on the lattice of {D.shape[-1]} points (a θ-trapezoidal step spans "
                         "at least two; raise jys.lattice)")
    return found[nfe]


def grid_thetas(points: list, path: list[int]) -> list[float]:
    """θ of each θ-trapezoidal step of a lattice path: its first leap ends at stage_point (jys.lattice)."""
    return [stage_theta(points, a, stage_point(points, a, b), b) for a, b in zip(path, path[1:])]


def find_schedule(model, x0: torch.Tensor, nfe: int, sampler: str = "euler", *, eps: float = 1e-5,
                  lattice: int = 32, objective: str = "auto", coarse_state: str = "auto", weight: str = "auto",
                  rule: str = "auto", multi_jump: str = "reject", prefix: int = 0, seed: int = 0,
                  batch_size: int = 512, progress: bool = False, end: str = "auto",
                  final_step: str = "sample") -> Schedule:
    """The grid of `nfe` steps of a time-grid sampler (euler, tau_leaping, tweedie, trapezoidal, remdm) that minimizes J
    over a lattice of max(lattice, 4·steps) uniform times plus half as many log-spaced at each end (steps = nfe, or
nfe + 1 under end='denoise'); the defaults are
    `python -m jys`'s (configs/config.yaml, jys.*). prefix K: the first K tokens of every sequence are a condition,
    never generated. Costs one model call per lattice point per batch of x0. With rule='sampler' for the θ-trapezoidal
    step (J of its two leaps) the schedule carries each step's θ: pass `run_sampler(..., thetas=schedule.thetas)`.
    end (resolve_end; final_step is run_sampler's): under 'denoise' the grid's last time is above ε, where the
    noise-removal call draws x_0 as the grid's last step."""
    if sampler not in TIME_GRID:
        raise ValueError(f"find_schedule serves the time-grid samplers {TIME_GRID}, not {sampler!r}; count-grid "
                         "samplers (kgillespie, confidence, dus) search over counts with `python -m jys`")
    if not isinstance(nfe, int) or nfe < 1:
        raise ValueError(f"nfe must be an integer >= 1, got {nfe!r}")
    if not 0.0 < eps < 1.0:
        raise ValueError(f"eps must lie in (0, 1), got {eps}")
    if x0.ndim != 2 or x0.dtype.is_floating_point or x0.min() < 0 or x0.max() >= model.process.data_states:
        raise ValueError(f"x0 must be data tokens [M, L] in [0, {model.process.data_states}), got {x0.dtype} of "
                         f"shape {tuple(x0.shape)}")
    kernel = model.process.kernel
    end = resolve_end(end, sampler, final_step)
    nfe_dp = dp_steps(nfe, end)
    n = lattice_size(lattice, nfe_dp)
    points = base_lattice(n, eps)
    rule = resolve_rule(rule, sampler, kernel, multi_jump)
    weight = resolve_weight(weight, rule, kernel, output_of(model), end)
    D, calls = lattice_table(model, x0, points, "tau", seed=seed + 1, objective=objective_for(objective, kernel, rule),
                             coarse_state=coarse_state, weight=weight, rule=rule, prefix=prefix,
                             batch_size=batch_size, progress=progress, base_points=n,
                             max_span=lattice_span(nfe_dp, int(lattice), len(points)))
    path, J = best_grid(D, nfe_dp)
    path = path[:nfe + 1]  # under 'denoise' ε is the noise removal's, not the grid's
    return Schedule(torch.tensor([points[i] for i in path], dtype=torch.float64), J, calls,
                    grid_thetas(points, path) if rule == "trapezoidal" else None)
