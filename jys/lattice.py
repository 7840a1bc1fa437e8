"""The grid objective J(grid) of any schedule, and its exact minimum over the grids on a lattice.

A sampler takes each step t_i → t_{i+1} of a grid with the rates read at (x_{t_i}, t_i) and frozen. On that
interval its path is a Poisson process over the marks it applies (jys.klub) with intensities λ_i, the
continuous-time reverse process one with intensities λ_t read at (x_t, t), so by Girsanov

  D(t_i, t_{i+1}) = ∫_{t_{i+1}}^{t_i} w(t) · E Σ_marks [λ_t log(λ_t/λ_i) − λ_t + λ_i] dt,     J = Σ_i D(t_i, t_{i+1}).

With w ≡ 1 (`weight=none`) J is the path KL of the frozen-rate sampler from the process, summed by the chain
rule: an upper bound of the KL of the samples' law. It is the quantity whose gains the hierarchical search
estimates one point at a time: KLUB(t2) = (t2 − t3)·E f_{t1}(t2) ≈ D(t1, t3) − D(t1, t2) − D(t2, t3).
`weight=survival` discounts a divergence made at time t by how much of it can still reach the sample
(`survival`, below); it replaces the hand-set step 1 → t_mix. `weight=reach` keeps the path KL whole and replaces
the sampler's one-step term by the KL of its image in the sample (jys.klub.step_terms, `reach`: a token's law at t_r
carried to x0 by the exact process given the other tokens), which forgets an error made where the kernel has mixed.
`weight=suffix` keeps the path KL whole and discounts step i's one-step term by the chance that the grid's later
steps leave the token where step i put it, Π_{j>i} k_j (k_j: the sampler's keep probability in step j, averaged over
tokens and sequences; 1 for the noise-removal call): a token that a later step moves is redrawn from rates that do
not depend on its wrong value, so its error is forgotten, one that stays carries it into the sample. With many short
steps after it the product tends to the exact process's no-jump probability (reach's regime), with few long ones it
stays near 1 (the plain term's); τ-leaping's reject rule keeps a token through a long step (k ≥ 1 − 1/e). J is then
not a sum of per-step terms, so the DP (optimal_suffix_grids) runs backward and keeps, per point and steps left, the
suffix of least J: exact for J's value of any grid, a heuristic for its minimum. `weight=mix` charges the tokens
that the later steps move the `reach` term instead of nothing: step i's term is K·plain + (1 − K)·reach, K = Π_{j>i}
k_j. Why: the later steps act on a token like a mixture of "keep" (weight K; the error lands in the sample whole)
and "redraw" (1 − K; the redraw still reads the token's value through its likelihood, so what reaches the sample is
the error's image, reach's term if the redraw were exact); KL is jointly convex, so the image's KL is at most that
mixture of the two KLs. It is suffix's J plus (1 − K)·reach, between suffix and plain, and a sum of the same form
(path + reach, plus (plain − reach)·K), so the same DP serves. `weight=marginal` keeps the path KL whole and
replaces the one-step term by the KL of each token's law at the step's end given the context alone, averaged over
the token's own value at its start (jys.klub.step_terms, `marginal`): a heuristic, not a bound (docstring there).

The θ-trapezoidal step (rule 'trapezoidal', absorbing kernels) is two frozen-rate leaps, t → t_θ with the rates read
at (x_t, t), then t_θ → s with the extrapolated ones (jys.klub.extrapolated_terms). By the chain rule over the
process's own x_{t_θ}, its KL is at most the first leap's D plus the second's, whose integrand compares the
extrapolated rates with the process's; it needs a read at t_θ, so t_θ is a lattice point: the one nearest the
step's time midpoint (`stage_point`), and the step's θ = (t − t_θ)/(t − s) goes into the schedule, which the
sampler takes (any θ in (0, 1) gives a second-order step). A step with no lattice point inside cannot be taken.

Estimation, on common random numbers for every grid scored on one lattice: M sequences x_0 from the data;
one forward path per sequence read at every lattice point (a valid joint law for every pair of points:
absorbing kernels through one uniform per position, so masks nest; other kernels by forward steps between
consecutive points); the model read once per point (log ratios, float32); the integrand of each pair
(coarse point p, fine point q) from the two reads (jys.klub.klub_terms); D by the trapezoid rule over the
lattice points inside the interval (the integrand is 0 at its start). Standard errors are over the M
sequences. The count family (k-Gillespie and the other count-grid samplers) takes points as unmasked-token
counts: x_k masks the L − k positions with the smallest uniforms, at each sequence's own time.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from common.memory import release_freed_memory
from common.progress import progress as progress_bar
from jys.klub import Coarse, coarse_read, extrapolated_terms, klub_terms, step_terms
from models.protocol import ModelOutput

F64 = torch.float64
WEIGHTS = ("none", "survival", "reach", "suffix", "mix", "marginal")


def survival(process, t: torch.Tensor, unigram: torch.Tensor) -> torch.Tensor:
    """w(t) [T]: how much a wrong mark at time t can still change the sample, per token.

    A mark sets a token to a data value y at time t; after t the token follows the reverse process, whose law
    of x_0 given x_t = y is the posterior p(x_0 | x_t = y) ∝ π0(x_0) P_t[x_0, y] (π0 the data's token law; per
    token, as the forward process acts on each token alone). Setting y where y' was due changes the sample's
    law by TV(p(·|y), p(·|y')). w(t) is its mean over two distinct values drawn from the marginal p_t:

      w(t) = Σ_{y≠y'} p_t(y) p_t(y') TV(p(·|y), p(·|y')) / Σ_{y≠y'} p_t(y) p_t(y').

    Closed forms: 1 for absorbing kernels (an unmasked token is the sample's: p(·|y) = δ_y); e^{−σ̄(t)} for
    the uniform kernel with a uniform π0 (p(·|y) = e^{−σ̄}δ_y + (1 − e^{−σ̄})/S). Where a kernel has mixed the
    posteriors all equal π0 and w → 0: one step through there costs nothing, and no threshold is needed."""
    t = torch.as_tensor(t, dtype=F64).reshape(-1)
    if process.kernel.mask is not None:
        return torch.ones_like(t)
    S = process.data_states
    pi0 = torch.as_tensor(unigram, dtype=F64)
    if pi0.shape != (S,) or (pi0 < 0).any() or not math.isclose(float(pi0.sum()), 1.0, rel_tol=1e-6):
        raise ValueError(f"survival needs the data's token law over {S} states summing to 1, got shape "
                         f"{tuple(pi0.shape)} summing to {float(pi0.sum()):.6g}")
    pi0 = pi0 / pi0.sum()
    out = torch.empty_like(t)
    for i, P in enumerate(process.transition(t)):  # [S, S]: P[x0, y]
        joint = pi0[:, None] * P[:, :S]  # [x0, y]
        p_y = joint.sum(0)  # [S]
        post = (joint / p_y.clamp_min(1e-300)).T  # [y, x0]
        tv = 0.5 * (post[:, None, :] - post[None, :, :]).abs().sum(-1)  # [y, y']
        pair = p_y[:, None] * p_y[None, :]
        pair.fill_diagonal_(0.0)
        out[i] = (pair * tv).sum() / pair.sum().clamp_min(1e-300)
    return out


def check_weight(weight: str, auto: bool = True) -> None:
    """A jys.weight name; 'auto' (jys.schedule.resolve_weight) where `auto`, not in a lattice, which takes it resolved."""
    if weight not in WEIGHTS and not (auto and weight == "auto"):
        raise ValueError(f"unknown jys.weight {weight!r}; expected one of {('auto',) * auto + WEIGHTS}")


POINTS_PER_STEP = 4  # a grid of N steps is chosen on a lattice of at least 4N uniform points (2N left the DP's optimum
# coarser than the golden-section hierarchy's on count_uniform at 16 calls, J 118.4 against 85.3; git history of
# docs/results/jys.md)


def lattice_size(lattice: int, nfe: int) -> int:
    """The uniform points of the lattice a grid of `nfe` steps is searched and scored on: max(lattice, 4·nfe)."""
    return max(int(lattice), POINTS_PER_STEP * int(nfe))


def base_lattice(points: int, eps: float) -> list[float]:
    """Lattice times, decreasing from 1 to ε: `points` uniform in t, and points/2 each uniform in log t and in
    log(1 − t) (down to 1e-3 from either end), so both the ends where grids crowd are resolved."""
    if points < 2:
        raise ValueError(f"the lattice needs at least 2 points, got {points}")
    lo = max(eps, 1e-3)
    ts = set(torch.linspace(1.0, eps, points, dtype=F64).tolist())
    half = max(2, points // 2)
    ts |= set(torch.logspace(math.log10(lo), 0.0, half, dtype=F64).tolist())
    ts |= set((1 - torch.logspace(-3.0, 0.0, half, dtype=F64)).tolist())
    return sorted({round(t, 12) for t in ts if eps <= t <= 1.0} | {1.0, eps}, reverse=True)


def stage_point(times, p: int, r: int) -> int | None:
    """The θ-trapezoidal step p → r's intermediate lattice point: the one strictly between them nearest the time
    midpoint (the earlier on a tie); None when there is none."""
    if r - p < 2:
        return None
    mid = (float(times[p]) + float(times[r])) / 2
    return min(range(p + 1, r), key=lambda q: (abs(float(times[q]) - mid), q))


def stage_theta(times, p: int, m: int, r: int) -> float:
    """θ of the step p → r whose first leap ends at point m: (t_p − t_m)/(t_p − t_r)."""
    return (float(times[p]) - float(times[m])) / (float(times[p]) - float(times[r]))


@dataclass
class GridValue:
    value: float  # J, the mean over the M sequences
    se: float  # its standard error over them
    terms: list[float]  # D of each interval


class PathLattice:
    """Forward paths of M data sequences read at every lattice point; D of any interval between two points.

    points: decreasing times from 1 to ε (family 'tau'), or increasing unmasked counts from 0 to L (family
    'count'). x0 [M, L] the data; prefix K: the first K tokens are data in every state and not summed."""

    def __init__(self, model, x0: torch.Tensor, points: list[float], family: str, seed: int, objective: str,
                 coarse_state: str = "auto", weight: str = "none", prefix: int = 0, batch_size: int = 512,
                 progress: bool = False, base_points: int = 32, read_cache: dict | None = None, rule: str = "none"):
        check_weight(weight, auto=False)
        if weight in ("reach", "suffix", "mix", "marginal") and rule == "none":
            raise ValueError(f"jys.weight={weight} changes J's one-step term, and this sampler's step rule is none "
                             "(absorbing kernels, Tweedie, τ-leaping under ordinal kernels): use jys.weight=none")
        if family not in ("tau", "count"):
            raise ValueError(f"unknown search family {family!r}; expected 'tau' or 'count'")
        if rule == "trapezoidal" and (weight != "none" or family != "tau" or model.process.kernel.mask is None
                                      or objective != "girsanov" or coarse_state not in ("auto", "start")):
            raise ValueError(f"the θ-trapezoidal step's J is derived for time grids under absorbing kernels, with "
                             f"jys.weight=none, jys.objective=girsanov and coarse state start; got family {family!r}, "
                             f"weight {weight!r}, objective {objective!r}, coarse state {coarse_state!r}, kernel "
                             f"{type(model.process.kernel).__name__}")
        self.model, self.process = model, model.process
        self.points, self.family = list(points), family
        self.objective, self.coarse_state, self.prefix, self.weight = objective, coarse_state, int(prefix), weight
        self.keep_context = weight in ("reach", "mix", "marginal")  # reads keep the context posterior under uniform kernels too
        self.batch_size, self.progress, self.base_points = batch_size, progress, base_points
        self.index = {p: i for i, p in enumerate(self.points)}
        if len(self.index) != len(self.points):
            raise ValueError("lattice points must be distinct")
        g = torch.Generator().manual_seed(seed)
        self.x, self.t = self._states(x0, g)  # [P, M, L], [P, M]
        data = x0[:, self.prefix:]
        pi0 = torch.bincount(data.reshape(-1), minlength=self.process.data_states).to(F64)
        self.w = survival(self.process, self.t.reshape(-1), pi0 / pi0.sum()).reshape(self.t.shape) \
            if weight == "survival" else torch.ones_like(self.t)
        self.reads: dict[int, Coarse] = {}
        self.shared = read_cache  # reads by (point, context kept), shared with lattices on the same x_0 (used when the state matches)
        self.pairs: dict[tuple[int, int], torch.Tensor] = {}
        # the sampler's one-step term, its keep probability and (weight=mix) the term's image in x0, of each step
        self.rule, self.rules, self.stays, self.images = rule, {}, {}, {}
        self.calls = 0

    def _states(self, x0: torch.Tensor, g: torch.Generator):
        M, L = x0.shape
        K = self.prefix
        if self.family == "count":
            u = torch.rand(x0.shape, generator=g, dtype=F64)
            if K:
                u[:, :K] = 2.0  # never masked
            order = u.argsort(1)
            xs, ts = [], []
            for k in self.points:
                k = int(k)
                masked = torch.zeros_like(x0, dtype=torch.bool).scatter_(1, order[:, : L - k], True)
                xs.append(torch.where(masked, self.process.kernel.mask, x0))
                if k == L:
                    ts.append(torch.zeros(M, dtype=F64))
                else:
                    u_max = u.gather(1, order[:, L - k - 1: L - k]).squeeze(1)  # the largest masked uniform
                    ts.append(self.process.noise.inverse(-torch.log1p(-u_max)).clamp(max=1.0))
            return torch.stack(xs), torch.stack(ts)
        times = torch.tensor(self.points, dtype=F64)
        if not (times[:-1] > times[1:]).all():
            raise ValueError("lattice times must decrease")
        if self.process.kernel.mask is not None:  # one uniform per position: masks nest at every time
            u = torch.rand(x0.shape, generator=g, dtype=F64)
            xs = [self.process.sample(x0, torch.full((M,), float(t), dtype=F64), u=u) for t in times]
        else:
            xs = self._path(x0, times, g)
        if K:
            xs = [torch.cat([x0[:, :K], x[:, K:]], 1) for x in xs]
        return torch.stack(xs), times[:, None].expand(len(times), M).contiguous()

    def _path(self, x0: torch.Tensor, times: torch.Tensor, g: torch.Generator) -> list[torch.Tensor]:
        """The forward chain at every time (decreasing), non-absorbing kernels. Drawn on the base lattice first
        (forward steps from ε up, x_{t'} ~ P_{σ̄(t') − σ̄(t)}[x_t, ·]), then the other points by the forward
        bridge between their base neighbours, with uniforms seeded by the gap: so a grid scored alone meets the
        same base path, and nearly the same states, as any other grid (common random numbers)."""
        M = x0.shape[0]
        base = base_lattice(self.base_points, float(times[-1]))
        on_base = {float(t) for t in base}
        kernel = self.process.kernel

        def sig(t: float) -> torch.Tensor:
            return self.process.sigma(torch.full((M,), t, dtype=F64))

        def draw(weights: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
            cdf = weights.cumsum(-1)
            return torch.searchsorted(cdf, (u * cdf[..., -1]).unsqueeze(-1)).squeeze(-1).clamp_(max=weights.shape[-1] - 1)

        states, x, s_prev = {}, x0, torch.zeros(M, dtype=F64)
        for t in sorted(on_base):
            s = sig(t)
            x = draw(kernel.transition_rows(x, s - s_prev), torch.rand(x0.shape, generator=g, dtype=F64))
            states[t], s_prev = x, s
        ups = sorted(on_base)
        seed = int(torch.randint(0, 2**62, (1,), generator=g))
        extra = sorted(float(t) for t in times if float(t) not in on_base)
        prev_gap, lo_t, gen = None, None, None
        for t in extra:
            gap = next(i for i, b in enumerate(ups) if b > t)  # ups[gap - 1] < t < ups[gap]
            if gap != prev_gap:
                prev_gap, lo_t = gap, ups[gap - 1]
                gen = torch.Generator().manual_seed((seed + 7919 * gap) % 2**62)
            hi_t = ups[gap]
            w = kernel.transition_rows(states[lo_t], sig(t) - sig(lo_t)) * kernel.transition_cols(states[hi_t], sig(hi_t) - sig(t))
            states[t] = draw(w, torch.rand(x0.shape, generator=gen, dtype=F64))
            lo_t = t
        return [states[float(t)] for t in times]

    def read(self, p: int) -> Coarse:
        if p not in self.reads:
            # shared by point and by whether the context is kept on request: with it `carried` takes the context
            # path, equal to the other only for a consistent model
            key = (self.points[p], self.keep_context)
            hit = self.shared.get(key) if self.shared is not None else None
            if hit is not None and torch.equal(hit.x, self.x[p]) and torch.equal(hit.t, self.t[p]):
                self.reads[p] = hit
            else:
                self.calls += -(-self.x.shape[1] // self.batch_size)
                self.reads[p] = coarse_read(self.model, self.x[p], self.t[p], self.batch_size, context=self.keep_context)
                if self.shared is not None:
                    self.shared[key] = self.reads[p]
        return self.reads[p]

    def pair(self, p: int, q: int) -> torch.Tensor:
        """Σ_{positions, marks} of the integrand per sequence, coarse read at point p, fine at q (p before q). [M]"""
        if p == q or (self.family == "count" and int(self.points[q]) == self.x.shape[2]):
            # the count L has nothing masked: no mark, and no read at its time t = 0, where a network's σ̄ = 0
            # (SEDD's absorbing output shift −log(e^σ̄ − 1)) is singular
            return torch.zeros(self.x.shape[1], dtype=F64)
        if (p, q) not in self.pairs:
            fine = self.read(q)
            self.pairs[(p, q)] = klub_terms(self.process, self.read(p), ModelOutput("score", fine.log_ratio), fine.x,
                                            fine.t, self.objective, self.coarse_state, first=self.prefix)
        return self.pairs[(p, q)]

    def second_leap(self, p: int, r: int, m: int) -> torch.Tensor:
        """The θ-trapezoidal step p → r's second-leap integrand (first leap to m, θ = stage_theta(p, m, r)) at each
        point q = m … r. [r − m + 1, M]"""
        return extrapolated_terms(self.process, self.read(p), self.read(m), [self.read(q) for q in range(m, r + 1)],
                                  stage_theta(self.points, p, m, r), self.objective, first=self.prefix)

    def two_leaps(self, p: int, r: int, m: int) -> torch.Tensor:
        """D per sequence of the θ-trapezoidal step p → r whose first leap ends at point m: the first leap's path
        term (trapezoid over the points in (p, m]) plus the second's (over [m, r]). [M]"""
        if not p < m < r:
            raise ValueError(f"a θ-trapezoidal step needs a lattice point strictly inside it: {p} → {r} through {m}")
        f = self.second_leap(p, r, m)
        dt = (self.t[m:r] - self.t[m + 1:r + 1]).abs()  # [r − m, M]
        return self.interval(p, m) + (dt * (f[:-1] + f[1:]) / 2).sum(0)

    def step_rule(self, p: int, r: int) -> torch.Tensor:
        """w(t_r) · Σ_l KL(q_l ‖ P_l) per sequence: the sampler's own error of the step p → r, landing at t_r (with
        weight=reach, the KL of the two laws' images in x0). [M]"""
        if self.rule in ("none", "trapezoidal"):  # the two leaps' one-step terms: none under absorbing kernels
            return torch.zeros(self.x.shape[1], dtype=F64)
        if (p, r) not in self.rules:
            if self.weight in ("suffix", "mix"):  # the keep probability only where J uses it (every pair reads this)
                term, self.stays[(p, r)] = step_terms(self.process, self.read(p), self.t[r], self.rule,
                                                      first=self.prefix, stay=True)
                if self.weight == "mix":
                    self.images[(p, r)] = self.w[r] * step_terms(self.process, self.read(p), self.t[r], self.rule,
                                                                 first=self.prefix, reach=True)
            else:
                term = step_terms(self.process, self.read(p), self.t[r], self.rule, first=self.prefix,
                                  reach=self.weight == "reach", marginal=self.weight == "marginal")
            self.rules[(p, r)] = self.w[r] * term
        return self.rules[(p, r)]

    def image(self, p: int, r: int) -> torch.Tensor:
        """weight=mix: the step p → r's one-step term as it reaches x0 (reach's term). [M]"""
        self.step_rule(p, r)
        return self.images[(p, r)]

    def stay(self, p: int, r: int) -> float:
        """The sampler's keep probability in the step p → r, the mean over tokens and sequences (weight=suffix or
        mix, which the constructor refuses without a step rule)."""
        self.step_rule(p, r)
        return float(self.stays[(p, r)].mean())

    def interval(self, p: int, r: int, survive: float = 1.0) -> torch.Tensor:
        """D per sequence of the step from point p to point r > p (trapezoid over the points between), its one-step
        term times `survive` (weight=suffix: the chance that the later steps keep the token; weight=mix adds 1 −
        survive times the term's image in x0). [M]"""
        if not 0 <= p < r < len(self.points):
            raise ValueError(f"an interval runs from a lattice point to a later one, got {p} → {r}")
        total = torch.zeros(self.x.shape[1], dtype=F64)
        prev = self.w[p] * self.pair(p, p)
        for q in range(p + 1, r + 1):
            cur = self.w[q] * self.pair(p, q)
            total += (self.t[q - 1] - self.t[q]).abs() * (prev + cur) / 2
            prev = cur
        total = total + survive * self.step_rule(p, r)
        return (total + (1 - survive) * self.image(p, r)) if self.weight == "mix" else total

    def grid_value(self, grid: list[float], stages: list[float] | None = None, release: bool = False) -> GridValue:
        """J of a grid whose points all lie on the lattice, with its standard error over the sequences. stages: the
        θ-trapezoidal steps' intermediate times, one per step, lattice points too (rule 'trapezoidal' only, and
        there required: θ = ½ puts them at the steps' midpoints). release: drop each step's reads once it is summed
        (for a lattice that scores this one grid: its memory then holds about one step's reads, not every point's;
        another grid on it would read them again). A shared read cache keeps its own references (its owner evicts);
        the θ-trapezoidal steps keep theirs."""
        if (stages is not None) != (self.rule == "trapezoidal") or \
                (stages is not None and len(stages) != len(grid) - 1):
            raise ValueError(f"a θ-trapezoidal grid (rule {self.rule!r}) is scored with one stage time per step: got "
                             f"{None if stages is None else len(stages)} for {len(grid) - 1} steps")
        missing = [g for g in list(grid) + list(stages or []) if g not in self.index]
        if missing:
            raise ValueError(f"grid points {missing[:4]} are not lattice points")
        idx = [self.index[g] for g in grid]
        steps = list(zip(idx, idx[1:]))
        if stages is not None:
            return self._value([self.two_leaps(a, b, self.index[m]) for (a, b), m in zip(steps, stages)])
        survive = [1.0] * len(steps)  # weight=suffix, mix: Π of the later steps' keep probabilities
        if self.weight in ("suffix", "mix"):
            for i in range(len(steps) - 2, -1, -1):
                survive[i] = survive[i + 1] * self.stay(*steps[i + 1])
        parts = []
        for (a, b), k in zip(steps, survive):
            parts.append(self.interval(a, b, k))
            if release:
                self._forget(range(a, b))  # later steps read from b on
        return self._value(parts)

    def _forget(self, points) -> None:
        """Drop this lattice's reads at these points and the pairs read coarse at them (a shared read cache keeps
        its own)."""
        gone = set(points)
        for p in gone:
            self.reads.pop(p, None)
        for key in [key for key in self.pairs if key[0] in gone]:
            del self.pairs[key]

    @staticmethod
    def _value(parts: list[torch.Tensor]) -> GridValue:
        release_freed_memory()
        per_seq = torch.stack(parts).sum(0)
        M = per_seq.numel()
        se = float(per_seq.std(unbiased=True) / math.sqrt(M)) if M > 1 else math.nan
        return GridValue(float(per_seq.mean()), se, [float(d.mean()) for d in parts])

    def table(self, indices: list[int] | None = None, max_span: int | None = None) -> torch.Tensor:
        """D[a, b] (mean over sequences) of the step from the a-th to the b-th of `indices` (lattice points,
        in order; default all), by the trapezoid over those points only; inf where b <= a, and where b − a >
        max_span (a step no grid of many steps takes: the pairs grow as the square of the lattice), except from the
        first point: the step from the prior may be as long as a grid likes (under a kernel that mixes early the
        best grids leap from 1 far into the data's range). [n, n]; with weight=suffix [3, n, n]: D without the
        one-step term, the one-step term, the keep probability (optimal_grids takes either); weight=mix the same
        with the term's image in x0 moved from the second part into the first."""
        idx = list(range(len(self.points))) if indices is None else list(indices)
        n = len(idx)
        span = n if max_span is None else max_span
        D = torch.full((n, n), math.inf, dtype=F64)
        suffix = self.weight in ("suffix", "mix")
        if self.rule == "trapezoidal":
            if indices is not None:
                raise ValueError("the θ-trapezoidal step's table runs over the whole lattice (its stage points)")
            return self._two_leap_table(span)
        step, kept = torch.zeros((n, n), dtype=F64), torch.ones((n, n), dtype=F64)
        bar = progress_bar(total=n * (n - 1) // 2, desc="JYS lattice pairs", leave=False, enabled=self.progress)
        for a in range(n - 1):
            p, acc = idx[a], torch.zeros((), dtype=F64)
            for b in range(a + 1, n if a == 0 else min(n, a + 1 + span)):
                q, q0 = idx[b], idx[b - 1]
                cur = (self.w[q] * self.pair(p, q) + self.w[q0] * self.pair(p, q0)) / 2
                acc = acc + ((self.t[q0] - self.t[q]).abs() * cur).mean()
                rule = self.step_rule(p, q).mean()
                if suffix:
                    image = self.image(p, q).mean() if self.weight == "mix" else 0.0
                    D[a, b], step[a, b], kept[a, b] = acc + image, rule - image, self.stay(p, q)
                else:
                    D[a, b] = acc + rule
                bar.update(1)
            self.reads.pop(p, None)  # later pairs never read p as coarse, nor as fine (fine follows coarse)
            release_freed_memory()  # a row's temporaries: without this the heap grows by GBs (common/memory.py)
        bar.close()
        return torch.stack([D, step, kept]) if suffix else D

    def _two_leap_table(self, span: int) -> torch.Tensor:
        """D[a, b] of the θ-trapezoidal step a → b through stage_point(a, b); inf where no point lies between
        them or b − a > span (except from the first point, as `table`). [n, n]"""
        n = len(self.points)
        D = torch.full((n, n), math.inf, dtype=F64)
        bar = progress_bar(total=n * (n - 1) // 2, desc="JYS lattice pairs (two leaps)", leave=False,
                           enabled=self.progress)
        for a in range(n - 1):
            for b in range(a + 2, n if a == 0 else min(n, a + 1 + span)):
                D[a, b] = self.two_leaps(a, b, stage_point(self.points, a, b)).mean()
            bar.update(n - 1 - a)
            self.reads.pop(a, None)
            release_freed_memory()
        bar.close()
        return D


def optimal_grids(D: torch.Tensor, max_steps: int) -> dict[int, tuple[list[int], float]]:
    """For each N = 1 … max_steps, the path 0 → P−1 of N steps through the lattice that minimizes the summed
    D (dynamic programming over points), with its value: {N: (indices, J)}. D [3, P, P] (weight=suffix, mix):
    optimal_suffix_grids."""
    if D.ndim == 3:
        return optimal_suffix_grids(D[0], D[1], D[2], max_steps)
    P = D.shape[0]
    best = torch.full((max_steps + 1, P), math.inf, dtype=F64)
    back = torch.full((max_steps + 1, P), -1, dtype=torch.long)
    best[0, 0] = 0.0
    for n in range(1, max_steps + 1):
        cand = best[n - 1][:, None] + D  # [from, to]
        best[n], back[n] = cand.min(0)
    out = {}
    for n in range(1, max_steps + 1):
        if not math.isfinite(float(best[n, P - 1])):
            continue
        path, j = [P - 1], P - 1
        for m in range(n, 0, -1):
            j = int(back[m, j])
            path.append(j)
        out[n] = (path[::-1], float(best[n, P - 1]))
    return out


def optimal_suffix_grids(path: torch.Tensor, step: torch.Tensor, kept: torch.Tensor,
                         max_steps: int) -> dict[int, tuple[list[int], float]]:
    """weight=suffix: J(grid) = Σ_i path[i] + step[i] · Π_{j>i} kept[j] over the grid's steps i. Backward over
    points: for each point and number of steps left, the suffix to P−1 of least J, with its Π kept; a step into
    a suffix is charged its one-step term times that product. Exact J for the grids it returns; their minimality
    is that of the suffixes (a costlier suffix that keeps fewer tokens could serve an earlier step better):
    {N: (indices, J)}."""
    P = path.shape[0]
    step = torch.where(torch.isfinite(path), step, 0.0)  # no inf·0 where the product is 0
    value = torch.full((max_steps + 1, P), math.inf, dtype=F64)
    survive = torch.ones((max_steps + 1, P), dtype=F64)
    nxt = torch.full((max_steps + 1, P), -1, dtype=torch.long)
    value[0, P - 1] = 0.0
    rows = torch.arange(P)
    for m in range(1, max_steps + 1):
        cand = path + step * survive[m - 1][None, :] + value[m - 1][None, :]  # [from, to]
        value[m], nxt[m] = cand.min(1)
        survive[m] = torch.where(torch.isfinite(value[m]), kept[rows, nxt[m]] * survive[m - 1][nxt[m]], 1.0)
    out = {}
    for n in range(1, max_steps + 1):
        if not math.isfinite(float(value[n, 0])):
            continue
        grid, j = [0], 0
        for m in range(n, 0, -1):
            j = int(nxt[m, j])
            grid.append(j)
        out[n] = (grid, float(value[n, 0]))
    return out
