"""Hierarchical golden-section search for the JYS schedule.

Level j takes the grid made by levels < j (NFE 1 → 2 → 4 → …; with a fixed step above t_mix,
level 0 is that step and NFE goes 1 → 2 → 3 → 5 → 9 → …) and, for every interval (t1, t3),
finds the t2 that maximizes the KLUB. A level's result is the list of these candidates, one per
interval; earlier points never move. Any NFE: the grid of NFE n = 2^j + r (0 < r < 2^j) is the
grid of NFE 2^j plus the r candidates of level j + 1 with the largest KLUB. So one search serves
every NFE, and levels are cached in a state file after each one: a rerun continues from there.

Under torchrun every rank runs the same search; the model calls of each KLUB evaluation are split by batch
over the ranks and their per-sample sums added (common.dist), so every rank takes the same golden-section
decisions, and they are those of one process.

Cost: per interval, one batched model call at x_{t1} (R1 is reused by every evaluation), then one
per golden-section evaluation; the intervals of a level are evaluated together, in batches.
k-Gillespie searches the same way over unmasked-token counts k instead of times.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from common import dist
from common.progress import progress as progress_bar
from jys.klub import Coarse, coarse_read, draw_pair, klub_terms
from samplers.schedules import first_count

F64 = torch.float64
INV_PHI = (math.sqrt(5) - 1) / 2


@dataclass
class SearchSettings:
    num_samples: int = 256  # data samples per KLUB evaluation
    batch_size: int = 512  # sequences per model call
    objective: str = "girsanov"
    coarse_state: str = "auto"  # where the coarse path reads its rates for changed tokens (jys.klub)
    tol: float = 0.25 / 1024  # stop when the bracket is narrower than min(tol, rel_tol · width)
    rel_tol: float = 0.02
    max_iter: int = 32
    margin: float = 1e-3  # bracket (t3 + m·w, t1 − m·w), w the interval width
    seed: int = 0
    eps: float = 1e-5
    max_bytes: int = 2**30  # stored coarse reads per group of intervals searched together
    mix_tv: float = 0.2  # t_mix: every token's forward law within this TV of the stationary law
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
            chosen = [level.points[i] for i in order[: nfe - n] if has_point(level, i)]
            grid = sorted(set(grid) | set(chosen), reverse=descending)
        if len(grid) - 1 < nfe:
            raise ValueError(f"the cached levels give only {len(grid) - 1} steps, fewer than nfe={nfe}")
        return grid


def has_point(level: Level, i: int) -> bool:
    """Interval i got a candidate (frozen and too narrow intervals get none: NaN point, KLUB −inf)."""
    return math.isfinite(level.points[i]) and level.klub[i] > -math.inf


def _interval_seed(seed: int, level: int, index: int) -> int:
    return (seed * 1_000_003 + level * 10_007 + index) % (2**62)


class TimeSearch:
    """The τ-leaping family (Euler, τ-leaping, Tweedie): points are times.

    Above t_mix (the mixing time of the forward process, see `models.process.mixing_time`) the
    grid takes one step from t = 1 and no other point: there the process has forgotten x_0.

    prefix K > 0 (conditional generation): the first K tokens of x_{t1} and x_{t2} are those of x_0 (the
    data's own prefixes, as the samplers hold them), and the KLUB sums over the other positions only."""

    def __init__(self, model, data_fn, settings: SearchSettings, length: int, t_mix: float = 1.0, prefix: int = 0):
        self.model, self.data_fn, self.s = model, data_fn, settings
        self.process = model.process
        self.length = length
        self.t_mix = t_mix
        self.prefix = int(prefix)
        self.calls = 0
        self.forwards = 0

    def start(self) -> list[float]:
        return [1.0, self.s.eps]

    def fixed_mixing_step(self) -> bool:
        """Level 0 is the step 1 → t_mix rather than a searched level."""
        return self.s.eps < self.t_mix < 1.0

    def _level(self, found, calls0: int, forwards0: int) -> Level:
        points, klub, evaluations = found
        return Level(points, klub, evaluations, self.calls - calls0, self.forwards - forwards0)

    def _coarse(self, xs: list[torch.Tensor], ts: list[torch.Tensor]) -> list[Coarse]:
        """One model read per interval at (x_{t1}, t1), batched across intervals."""
        M = self.s.num_samples
        x, t = torch.cat(xs), torch.cat(ts)
        self.calls += -(-x.shape[0] // self.s.batch_size)
        self.forwards += x.shape[0]
        read = coarse_read(self.model, x, t, self.s.batch_size)
        return [read.rows(i * M, (i + 1) * M) for i in range(len(xs))]

    def _klub(self, coarse: list[Coarse], x2: list[torch.Tensor], t2: list[torch.Tensor],
              duration: list[torch.Tensor]) -> list[float]:
        """E[duration · Σ integrand] for each item; the fine reads stream through in model-call batches,
        so no [M, L, S] tensor of them is kept."""
        M, bs = self.s.num_samples, self.s.batch_size
        x, t = torch.cat(x2), torch.cat(t2)
        sums = [torch.zeros(M, dtype=F64) for _ in x2]
        for i in range(0, x.shape[0], bs):
            j = min(i + bs, x.shape[0])
            self.calls += 1  # counted on every rank: the search's calls, whichever rank makes them
            self.forwards += j - i
            if not dist.mine(i // bs):  # torchrun: batch k on rank k mod P, its sums added below
                continue
            fine = self.model(x[i:j], t[i:j])
            for k in range(i // M, (j - 1) // M + 1):  # the items whose rows lie in [i, j)
                a, b = max(i, k * M), min(j, (k + 1) * M)
                part = type(fine)(fine.kind, fine.values[a - i:b - i])
                sums[k][a - k * M:b - k * M] = klub_terms(self.process, coarse[k].rows(a - k * M, b - k * M), part,
                                                          x[a:b], t[a:b], self.s.objective, self.s.coarse_state,
                                                          first=self.prefix)
        sums = list(dist.sum_disjoint(torch.stack(sums)))  # each row's sum was filled by one rank
        values = [float((d * s).mean()) for d, s in zip(duration, sums)]
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"the KLUB is not finite ({values}): the model's ratios hold NaN or inf")
        return values

    def level(self, grid: list[float], level: int) -> Level:
        s, M = self.s, self.s.num_samples
        calls0, forwards0 = self.calls, self.forwards
        iv = [(grid[i], grid[i + 1]) for i in range(len(grid) - 1)]
        frozen = {i for i, (t1, t3) in enumerate(iv) if t3 >= self.t_mix}  # the one step above t_mix
        seeds = [_interval_seed(s.seed, level, i) for i in range(len(iv))]
        x0 = {}

        def evaluate(which: list[int], points: list[float], coarse: dict) -> list[float]:
            xs, ts = [], []
            for i, p in zip(which, points):
                tt = torch.full((M,), p, dtype=F64)
                xs.append(self._held(draw_pair(self.process, x0[i], seeds[i] + 1, iv[i][0], tt)[1], x0[i]))
                ts.append(tt)
            return self._klub([coarse[i] for i in which], xs, ts, [torch.full((M,), p - iv[i][1], dtype=F64)
                                                                   for i, p in zip(which, points)])

        def prepare(group: list[int]) -> dict:
            for i in group:
                x0[i] = self.data_fn(M, torch.Generator().manual_seed(seeds[i]))
            x1 = [self._held(draw_pair(self.process, x0[i], seeds[i] + 1, iv[i][0],
                                       torch.full((M,), iv[i][1], dtype=F64))[0], x0[i]) for i in group]
            return dict(zip(group, self._coarse(x1, [torch.full((M,), iv[i][0], dtype=F64) for i in group])))

        return self._level(_grouped(iv, frozen, prepare, evaluate, s, f"JYS level {level}", None, self._group_size()),
                           calls0, forwards0)

    def _held(self, x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
        """x with its first `prefix` tokens set to x_0's."""
        return torch.cat([x0[:, : self.prefix], x[:, self.prefix:]], dim=1) if self.prefix else x

    def _group_size(self) -> int:
        """Intervals searched together: their stored coarse reads (float32) fit jys.max_bytes; an ordinal kernel's read
        also keeps the context posterior (jys.klub.Coarse.log_context), as large again."""
        per = self.s.num_samples * self.length * self.process.num_states * 4 * (2 if self.process.kernel.ordinal else 1)
        return max(1, self.s.max_bytes // per)


class CountSearch(TimeSearch):
    """k-Gillespie (absorbing): points are unmasked-token counts k; x_k masks the L − k positions with
    the smallest uniforms, at the per-sample time where exactly those are masked."""

    def __init__(self, model, data_fn, settings: SearchSettings, length: int):
        super().__init__(model, data_fn, settings, length)
        if self.process.kernel.mask is None:
            raise ValueError("the k-Gillespie search needs an absorbing kernel")

    def start(self) -> list[float]:
        return [0.0, float(self.length)]

    def fixed_mixing_step(self) -> bool:
        return False

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
        x0, us, last_t = {}, {}, {}

        def prepare(group: list[int]) -> dict:
            for i in group:
                x0[i] = self.data_fn(M, torch.Generator().manual_seed(seeds[i]))
                us[i] = torch.rand(x0[i].shape, generator=torch.Generator().manual_seed(seeds[i] + 1), dtype=F64)
                last_t[i] = self._state(x0[i], us[i], iv[i][1])[1]
            first = [self._state(x0[i], us[i], iv[i][0]) for i in group]
            return dict(zip(group, self._coarse([x for x, _ in first], [t for _, t in first])))

        def evaluate(which: list[int], points: list[float], coarse: dict) -> list[float]:
            states = [self._state(x0[i], us[i], int(round(p))) for i, p in zip(which, points)]
            return self._klub([coarse[i] for i in which], [x for x, _ in states], [t for _, t in states],
                              [t - last_t[i] for (_, t), i in zip(states, which)])

        low = first_count(self.process, self.length)  # counts 1 … low − 1 are reached at no t < 1 (long L)
        brackets = [(max(k1, low - 1) if k1 == 0 else k1, k3) for k1, k3 in iv]
        return self._level(_grouped(brackets, set(), prepare, evaluate, s, f"JYS-k level {level}", 2,
                                    self._group_size()), calls0, forwards0)


def _grouped(iv, frozen: set, prepare, evaluate, s: SearchSettings, desc: str, bracket_min, group: int):
    """_golden over groups of at most `group` intervals: prepare(group) makes their coarse reads, which
    live only while that group is searched, so peak memory does not grow with the number of intervals.
    Frozen intervals get no candidate. Returns (points, klub, evaluations) over all intervals."""
    points, klub, evals = [math.nan] * len(iv), [-math.inf] * len(iv), 0
    live = [i for i in range(len(iv)) if i not in frozen]
    for g in range(0, len(live), group):
        members = live[g:g + group]
        coarse = prepare(members)
        p, k, e = _golden([iv[i] for i in members],
                          lambda which, pts, c=coarse: evaluate([members[w] for w in which], pts, c), s, desc,
                          bracket_min)
        for i, pi, ki in zip(members, p, k):
            points[i], klub[i] = pi, ki
        evals += e
        del coarse  # free this group's reads before the next group's are made
    return points, klub, evals


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
    bar = progress_bar(total=s.max_iter, desc=desc, leave=False, enabled=s.progress)
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
