"""Hierarchical golden-section search for the JYS schedule.

Level j takes the grid made by levels < j (NFE 1 → 2 → 4 → …) and, for every interval (t1, t3),
finds the t2 that maximizes the KLUB. A level's result is the list of these candidates, one per
interval; earlier points never move. Any NFE: the grid of NFE n = 2^j + r (0 < r < 2^j) is the
grid of NFE 2^j plus the r candidates of level j + 1 with the largest KLUB. So one search serves
every NFE, and levels are cached in a state file after each one: a rerun continues from there.

Cost: per interval, one batched model call at x_{t1} (R1 is reused by every evaluation), then one
per golden-section evaluation; the intervals of a level are evaluated together, in batches.
k-Gillespie searches the same way over unmasked-token counts k instead of times.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

from jys.klub import draw_pair, klub_terms, model_ratios

F64 = torch.float64
INV_PHI = (math.sqrt(5) - 1) / 2


@dataclass
class SearchSettings:
    num_samples: int = 256  # data samples per KLUB evaluation
    batch_size: int = 512  # sequences per model call
    objective: str = "girsanov"
    tol: float = 0.25 / 1024  # stop when the bracket is narrower than min(tol, rel_tol · width)
    rel_tol: float = 0.02
    max_iter: int = 32
    margin: float = 1e-3  # bracket (t3 + m·w, t1 − m·w), w the interval width
    seed: int = 0
    eps: float = 1e-5
    progress: bool = True


@dataclass
class Level:
    """Candidates of one level: for interval i of the grid before it, the best point and its KLUB."""

    points: list[float]
    klub: list[float]
    evaluations: int
    model_calls: int
    sample_forwards: int


@dataclass
class SearchState:
    levels: list[Level] = field(default_factory=list)
    wall_time: float = 0.0

    def grid(self, start: list[float], nfe: int) -> list[float]:
        """The schedule of `nfe` steps from the cached levels (they must reach far enough)."""
        descending = start[0] > start[-1]
        grid = list(start)
        for level in self.levels:
            n = len(grid) - 1
            if n >= nfe:
                break
            order = sorted(range(len(level.points)), key=lambda i: -level.klub[i])
            chosen = [level.points[i] for i in order[: nfe - n] if math.isfinite(level.klub[i])]
            grid = sorted(set(grid) | set(chosen), reverse=descending)
        if len(grid) - 1 < nfe:
            raise ValueError(f"the cached levels give only {len(grid) - 1} steps, fewer than nfe={nfe}")
        return grid


def _interval_seed(seed: int, level: int, index: int) -> int:
    return (seed * 1_000_003 + level * 10_007 + index) % (2**62)


class TimeSearch:
    """The τ-leaping family (Euler, τ-leaping, Tweedie): points are times."""

    def __init__(self, model, data_fn, settings: SearchSettings):
        self.model, self.data_fn, self.s = model, data_fn, settings
        self.process = model.process
        self.calls = 0
        self.forwards = 0

    def start(self) -> list[float]:
        return [1.0, self.s.eps]

    def _ratios(self, x, t):
        self.calls += -(-x.shape[0] // self.s.batch_size)
        self.forwards += x.shape[0]
        return model_ratios(self.model, x, t, self.s.batch_size)

    def _level(self, found, calls0: int, forwards0: int) -> Level:
        points, klub, evaluations = found
        return Level(points, klub, evaluations, self.calls - calls0, self.forwards - forwards0)

    def level(self, grid: list[float], level: int) -> Level:
        s, M = self.s, self.s.num_samples
        calls0, forwards0 = self.calls, self.forwards
        iv = [(grid[i], grid[i + 1]) for i in range(len(grid) - 1)]
        seeds = [_interval_seed(s.seed, level, i) for i in range(len(iv))]
        x0 = [self.data_fn(M, torch.Generator().manual_seed(sd)) for sd in seeds]
        x_t1 = [draw_pair(self.process, x0[i], sd + 1, t1, torch.full((M,), t3, dtype=F64))[0]
                for i, (sd, (t1, t3)) in enumerate(zip(seeds, iv))]
        t1_all = torch.cat([torch.full((M,), t1, dtype=F64) for t1, _ in iv])
        r1 = self._ratios(torch.cat(x_t1), t1_all).split(M)

        def evaluate(which: list[int], points: list[float]) -> list[float]:
            xs, ts = [], []
            for i, p in zip(which, points):
                tt = torch.full((M,), p, dtype=F64)
                xs.append(draw_pair(self.process, x0[i], seeds[i] + 1, iv[i][0], tt)[1])
                ts.append(tt)
            r2 = self._ratios(torch.cat(xs), torch.cat(ts)).split(M)
            out = []
            for k, (i, p) in enumerate(zip(which, points)):
                t1 = torch.full((M,), iv[i][0], dtype=F64)
                terms = klub_terms(self.process, r1[i], x_t1[i], t1, r2[k], xs[k], ts[k], s.objective)
                out.append(float((p - iv[i][1]) * terms.mean()))
            return out

        return self._level(_golden(iv, evaluate, s, f"JYS level {level}", None), calls0, forwards0)


class CountSearch(TimeSearch):
    """k-Gillespie (absorbing): points are unmasked-token counts k; x_k masks the L − k positions with
    the smallest uniforms, at the per-sample time where exactly those are masked."""

    def __init__(self, model, data_fn, settings: SearchSettings, length: int):
        super().__init__(model, data_fn, settings)
        self.length = length
        if self.process.kernel.mask is None:
            raise ValueError("the k-Gillespie search needs an absorbing kernel")

    def start(self) -> list[float]:
        return [0.0, float(self.length)]

    def _state(self, x0, u, k: int):
        """x with k unmasked tokens and its per-sample time t(k). ([M, L], [M])"""
        L = self.length
        order = u.argsort(1)
        masked = torch.zeros_like(x0, dtype=torch.bool).scatter_(1, order[:, : L - k], True)
        x = torch.where(masked, self.process.kernel.mask, x0)
        if k == L:
            return x, torch.zeros(x0.shape[0], dtype=F64)
        u_max = u.gather(1, order[:, L - k - 1: L - k]).squeeze(1)  # the largest masked uniform
        return x, self.process.noise.inverse(-torch.log1p(-u_max)).clamp(max=1.0)

    def level(self, grid: list[float], level: int) -> Level:
        s, M = self.s, self.s.num_samples
        calls0, forwards0 = self.calls, self.forwards
        iv = [(int(grid[i]), int(grid[i + 1])) for i in range(len(grid) - 1)]
        seeds = [_interval_seed(s.seed, level, i) for i in range(len(iv))]
        x0 = [self.data_fn(M, torch.Generator().manual_seed(sd)) for sd in seeds]
        us = [torch.rand(x0[i].shape, generator=torch.Generator().manual_seed(sd + 1), dtype=F64)
              for i, sd in enumerate(seeds)]
        first = [self._state(x0[i], us[i], k1) for i, (k1, _) in enumerate(iv)]
        last_t = [self._state(x0[i], us[i], k3)[1] for i, (_, k3) in enumerate(iv)]
        r1 = self._ratios(torch.cat([x for x, _ in first]), torch.cat([t for _, t in first])).split(M)

        def evaluate(which: list[int], points: list[float]) -> list[float]:
            states = [self._state(x0[i], us[i], int(round(p))) for i, p in zip(which, points)]
            r2 = self._ratios(torch.cat([x for x, _ in states]), torch.cat([t for _, t in states])).split(M)
            out = []
            for k, i in enumerate(which):
                x2, t2 = states[k]
                x1, t1 = first[i]
                terms = klub_terms(self.process, r1[i], x1, t1, r2[k], x2, t2, s.objective)
                out.append(float(((t2 - last_t[i]) * terms).mean()))
            return out

        return self._level(_golden(iv, evaluate, s, f"JYS-k level {level}", 2), calls0, forwards0)


def _golden(iv, evaluate, s: SearchSettings, desc: str, bracket_min) -> tuple[list, list, int]:
    """Golden-section maximization in every interval at once (one batched evaluation per round);
    returns each interval's best point, its KLUB, and the number of evaluations.

    bracket_min=None: continuous times; an integer: counts, where intervals narrower than it get no
    candidate and points are rounded."""
    integer = bracket_min is not None
    n = len(iv)
    a, b = [0.0] * n, [0.0] * n
    best = [(-math.inf, math.nan)] * n
    stop = [0.0] * n
    live = []
    for i, (hi, lo) in enumerate(iv):
        w = abs(hi - lo)
        if integer and w < bracket_min:
            continue
        lo_, hi_ = (min(hi, lo), max(hi, lo))
        m = max(s.margin * w, 1.0 if integer else 0.0)
        a[i], b[i] = lo_ + m, hi_ - m
        stop[i] = 1.0 if integer else min(s.tol, s.rel_tol * w)
        live.append(i)
    fmt = (lambda v: float(round(v))) if integer else float
    c = {i: b[i] - INV_PHI * (b[i] - a[i]) for i in live}
    d = {i: a[i] + INV_PHI * (b[i] - a[i]) for i in live}
    evals = 0

    def run(which, pts):
        nonlocal evals
        if not which:
            return []
        vals = evaluate(which, [fmt(p) for p in pts])
        evals += len(which)
        for i, p, v in zip(which, pts, vals):
            if v > best[i][0]:
                best[i] = (v, fmt(p))
        return vals

    fc = dict(zip(live, run(live, [c[i] for i in live])))
    fd = dict(zip(live, run(live, [d[i] for i in live])))
    bar = tqdm(total=s.max_iter, desc=desc, leave=False, disable=not s.progress)
    for _ in range(s.max_iter):
        active = [i for i in live if b[i] - a[i] > stop[i]]
        if not active:
            break
        new_pts = []
        for i in active:
            if fc[i] > fd[i]:
                b[i], d[i], fd[i] = d[i], c[i], fc[i]
                c[i] = b[i] - INV_PHI * (b[i] - a[i])
                new_pts.append(("c", i, c[i]))
            else:
                a[i], c[i], fc[i] = c[i], d[i], fd[i]
                d[i] = a[i] + INV_PHI * (b[i] - a[i])
                new_pts.append(("d", i, d[i]))
        vals = run([i for _, i, _ in new_pts], [p for _, _, p in new_pts])
        for (which, i, _), v in zip(new_pts, vals):
            (fc if which == "c" else fd)[i] = v
        bar.update(1)
    bar.close()
    return [p for _, p in best], [v for v, _ in best], evals
