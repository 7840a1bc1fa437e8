"""J read on the sampler's own states: the grid objective in the sampler's direction, with its compounding.

J (jys.lattice) sums each step's divergence read on the process's states x_{t_i}: by the chain rule that is the path
KL(process ‖ sampler), an upper bound of KL(data ‖ samples). What it cannot see is how a step's error changes the
states the later steps start from (docs/results/jys.md, "Why no step term wins at 4 calls": the compounding). The
chain rule in the other direction reads every step on the sampler's own states x̂_{t_i}:

  KL(sampler path ‖ process path) = Σ_i E_{x̂_{t_i} ~ sampler} KL( sampler step(· | x̂_{t_i}) ‖ process step(· | x̂_{t_i}) ),

an upper bound of KL(samples ‖ data), the divergence in a sample's cross-entropy under the data (chain NLL = the
samples' entropy + this KL). Each step's term is estimated as J's is, with both paths started at x̂_{t_i}: the
sampler's one-step term Σ_l KL(q_l ‖ P_l) (q the sampler's law of a token at t_{i+1}, P the frozen-denoiser path's;
jys.klub.step_terms, already in the sampler's direction) plus the frozen-denoiser path's Girsanov KL from the
process read on the frozen path's own states (objective 'reverse': ∫ Σ λ1 log(λ1/λ) − λ1 + λ dt, states x_u drawn
from the frozen path's law at u, the model read at (x_u, u) on J's lattice points inside the step, at most `per_step` of them, trapezoid rule).
The split into these two parts holds exactly in J's direction (step_terms); here it is the same estimate with the
states and the direction swapped (the path term is read under the frozen path's product law, not the sampler's step
law), so the sum is a heuristic for the step's KL, neither an upper nor a lower bound. With jys.rule=none there is no
step term: the states are the sampler's, the terms the frozen path's alone. Uniform kernels only (the constructor
says why). Thinning the lattice points of a long step (per_step) biases its term: the pipeline reads them all.

It is not a sum of terms over the lattice's pairs (x̂_{t_i} depends on every earlier step), so no DP: `refine` starts
from J's DP optimum, takes another start grid (uniform, cosine, power grids) or moves one point at a time over the
lattice only where J_Q falls by more than twice the standard error of the paired difference (common random numbers).
Cost: one model read per step and one per lattice point inside the grid's span, per sequence and grid.
"""
from __future__ import annotations

import torch

# _step_law: the sampler's and the frozen path's one-step laws of each token
from jys.klub import _step_law, coarse_read, klub_terms, step_terms
from jys.lattice import GridValue
from models.protocol import ModelOutput
from samplers.loop import prior_sample
from samplers.steps import inverse_cdf

F64 = torch.float64


def _seed(*parts: int) -> int:
    """A seed from integers, the same in every process (Python's str hash is not)."""
    h = 0
    for p in parts:
        h = (h * 1_000_003 + int(p)) % 2**61
    return h


def _draw(probs: torch.Tensor, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return inverse_cdf(probs, torch.rand((*probs.shape[:-1], 1), generator=g, dtype=F64))


class OnPolicyJ:
    """J of any grid on the sampler's own states, M sequences from the prior, common random numbers: the same
    prior draw and the same uniforms per (step index, lattice point) for every grid."""

    def __init__(self, model, points: list[float], num: int, length: int, rule: str, law: str, seed: int = 0,
                 batch_size: int = 512, per_step: int = 8, prefix: torch.Tensor | None = None, marginal: bool = False):
        """rule: J's one-step term (jys.schedule.resolve_rule); law: the sampler's own step (resolve_rule with
        'sampler'), which draws the states the later steps are read on; prefix [num, K]: the condition tokens of each
        sequence (data in every state, not summed), or None; marginal: the one-step term of each token's law given the
        context (jys.klub.step_terms, jys.weight=marginal's) instead of the sampler's own."""
        process = model.process
        if process.kernel.mask is not None or process.kernel.ordinal:
            raise ValueError("J on the sampler's states is built for uniform kernels: under an absorbing kernel the steps "
                             "time the unmasking exactly and J's states are the sampler's already; under an ordinal one "
                             "the frozen path makes moves whose process rate underflows to 0 near t = 0 (chain_gauss), "
                             "where its direction of the KL is infinite")
        if law not in ("euler", "tau_leaping", "tau_leaping_last", "tweedie"):
            raise ValueError(f"J on the sampler's states needs the sampler's one-step law; {law!r} has none here")
        self.model, self.process, self.rule, self.law = model, process, rule, law
        self.points = sorted({float(p) for p in points}, reverse=True)
        if per_step < 3:
            raise ValueError(f"per_step must be >= 3 (the step's end and at least two points inside), got {per_step}")
        self.batch_size, self.seed, self.per_step, self.marginal = batch_size, int(seed), int(per_step), bool(marginal)
        self.x1 = prior_sample(process, num, length, torch.Generator().manual_seed(self.seed))
        self.first = 0 if prefix is None else int(prefix.shape[1])
        if prefix is not None:
            if prefix.shape[0] != num or self.first > length:
                raise ValueError(f"prefix must be [{num}, K <= {length}], got {tuple(prefix.shape)}")
            self.x1[:, : self.first] = prefix
        self.calls = 0
        self.cache: dict[tuple, tuple[torch.Tensor, list[torch.Tensor]]] = {}

    def _read(self, x: torch.Tensor, t: float):
        self.calls += -(-x.shape[0] // self.batch_size)
        return coarse_read(self.model, x, torch.full((x.shape[0],), t, dtype=F64), self.batch_size, context=True)

    def _step(self, x: torch.Tensor, t: float, s: float, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(D per sequence, the sampler's states at s) of one step t → s from x."""
        process, M = self.process, x.shape[0]
        coarse = self._read(x, t)
        s_t = torch.full((M,), s, dtype=F64)
        D = step_terms(process, coarse, s_t, self.rule, first=self.first, marginal=self.marginal)
        inner = [u for u in self.points if s < u < t]
        if len(inner) >= self.per_step:  # thinned evenly by index: the lattice is already dense where rates change fast
            inner = [inner[round(k * (len(inner) - 1) / (self.per_step - 2))] for k in range(self.per_step - 1)]
        inner = sorted(set(inner), reverse=True) + [s]
        ratio, context = coarse.log_ratio.to(F64).exp(), coarse.context(slice(None))  # once per step, not per point
        prev_u, prev_f = t, torch.zeros(M, dtype=F64)
        for u in inner:
            u_t = torch.full((M,), u, dtype=F64)
            _, P = _step_law(process, ratio, x, coarse.t, u_t, "tweedie", context)
            xu = self._keep_prefix(_draw(P, _seed(self.seed, index, round(u * 1e9))), x)
            fine = self._read(xu, u)
            f = klub_terms(process, coarse, ModelOutput("score", fine.log_ratio), xu, u_t, "reverse", "denoiser",
                           first=self.first)
            D = D + (prev_u - u) * (prev_f + f) / 2
            prev_u, prev_f = u, f
        q, _ = _step_law(process, ratio, x, coarse.t, s_t, self.law, context)
        return D, self._keep_prefix(_draw(q, _seed(self.seed, index, -1)), x)

    def _keep_prefix(self, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
        new[:, : self.first] = old[:, : self.first]
        return new

    def totals(self, times: list[float]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """J of a grid per sequence [M], and each step's term per sequence (decreasing times from 1 to ε; the last
        point's noise removal is every grid's and not counted)."""
        times = [float(t) for t in times]
        if any(a <= b for a, b in zip(times, times[1:])):
            raise ValueError(f"grid times must decrease, got {times}")
        x, terms = self.x1, []
        for i in range(len(times) - 1):
            key = tuple(times[: i + 2])
            if key not in self.cache:
                self.cache[key] = self._step(x, times[i], times[i + 1], i)
            D, x = self.cache[key]
            terms.append(D)
        return torch.stack(terms).sum(0), terms

    def value(self, times: list[float]) -> GridValue:
        """J of a grid: its mean over the M sequences, standard error and each step's mean term."""
        total, terms = self.totals(times)
        return GridValue(float(total.mean()), float(total.std() / total.numel() ** 0.5), [float(d.mean()) for d in terms])

    def better(self, cand: list[float], than: list[float], z: float = 2.0) -> bool:
        """Whether J of `cand` is below J of `than` by more than z standard errors of the paired difference over the
        M sequences (common random numbers): a move J's own noise cannot explain."""
        d = self.totals(than)[0] - self.totals(cand)[0]
        return bool(d.mean() > z * d.std() / d.numel() ** 0.5)

    def snap(self, times: list[float]) -> list[float] | None:
        """A grid moved to its nearest lattice points (its ends to the lattice's, 1 and ε), or None where two points
        land on one."""
        inner = [min(self.points, key=lambda p: abs(p - float(t))) for t in times[1:-1]]
        grid = [self.points[0], *inner, self.points[-1]]
        return grid if all(a > b for a, b in zip(grid, grid[1:])) else None

    def refine(self, starts: list[list[float]], sweeps: int = 4, window: int = 4, z: float = 2.0,
               log=None) -> tuple[list[float], GridValue]:
        """From the first start (J's DP optimum), take the least J of the starts (each snapped to the lattice) that is
        below it by more than z paired standard errors, then coordinate descent: each inner point in turn moves to
        the lattice point, within `window` points of it and strictly between its neighbours, of least J, if that is
        below the current grid's by more than z paired standard errors (the others fixed), until a sweep moves nothing
        or `sweeps` are done. The starts cover the global shape; the window keeps a sweep to O(window · steps)
        evaluations; the test keeps J's noise from moving the grid."""
        snapped = [g for g in (self.snap(s) for s in starts) if g is not None]
        if not snapped:
            raise ValueError("no start grid fits the lattice (two of its points snap to one lattice point)")
        grid = snapped[0]
        for g in sorted(snapped[1:], key=lambda g: self.value(g).value):
            if self.better(g, grid, z):
                grid = g
                break
        best = self.value(grid)
        if log:
            log(f"start {[round(t, 4) for t in grid]} J {best.value:.2f} (of {len(snapped)} starts)")
        for _ in range(sweeps):
            moved = False
            for i in range(1, len(grid) - 1):
                at = self.points.index(grid[i])
                near = self.points[max(0, at - window): at + window + 1]
                cands = [grid[:i] + [u] + grid[i + 1:] for u in near if grid[i + 1] < u < grid[i - 1] and u != grid[i]]
                if cands:
                    cand = min(cands, key=lambda c: self.value(c).value)
                    if self.better(cand, grid, z):
                        grid, best, moved = cand, self.value(cand), True
                if log:
                    log(f"point {i}: {[round(t, 4) for t in grid]} J {best.value:.2f}")
            if not moved:
                break
        return grid, best
