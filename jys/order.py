"""J for a count-grid sampler that reveals positions in an order fixed before sampling (DUS's dilated order).

Such a sampler, on counts 0 = k_0 < k_1 < … < k_N = L, reads the model once per step and draws the tokens of the
order's slots k_{i−1} … k_i − 1 each from p(x_l | X_{k_{i−1}}), X_k the data at the order's first k positions.
Revealing one token per call in the same order draws the model's own joint law by the chain rule, and that is the
refined path every grid is compared with: the coarse step k → k′ draws slot j's token from the read at k where the
refined path draws it from the read at j (given the tokens of slots k … j − 1 too). Both paths reveal the same
positions; only the context differs. So, with x_0 from the data standing for the refined path,

    D(k, k′) = E Σ_{j=k}^{k′−1} KL( p(x_{o_j} | X_j) ‖ p(x_{o_j} | X_k) ),      J(grid) = Σ_i D(k_{i−1}, k_i),

and J is exactly KL(refined ‖ sampler) over the revealed tokens when x_0 follows the model's law (the exact
oracle: the KL of the sampler's output from the data). One step of one token costs 0; tokens that are
independent given X_k (DUS's premise: one new position per gap between revealed ones of a Markov chain) cost 0
together. It is additive over steps, so the DP over counts (jys.lattice.optimal_grids) is exact. Cost: one read per
count 0 … L − 1 (L model calls per batch of x_0); the uniform-position count lattice (jys.lattice, family 'count')
cannot see the order and stays the objective of k-Gillespie and confidence by default. With a uniformly random
permutation per x_0 (jys.order=shuffle) the same J is k-Gillespie's reveal-path KL in expectation (sampler_order).
"""
from __future__ import annotations

import math

import torch

from common.progress import progress as progress_bar
from models.protocol import concrete_ratios
from samplers.loop import run_sampler
from samplers.schedules import first_count, times_from_counts
from samplers.steps import inverse_cdf
from samplers.unmasking import count_times, dilated_order

F64 = torch.float64
ORDERS = ("auto", "random", "dus", "shuffle")


def check_order(order: str) -> str:
    if order not in ORDERS:
        raise ValueError(f"unknown jys.order {order!r}; expected one of {ORDERS}")
    return order


def resolve_order(order: str, sampler: str) -> str:
    """jys.order: 'dus' (this module's J, DUS's dilated order; for sampler=dus only: J of one sampler's order says
    nothing of another's), 'shuffle' (this module's J over a uniformly random permutation per x_0: k-Gillespie's
    law; for sampler=kgillespie only), 'random' (the uniform-position count lattice, Girsanov's KLUB); 'auto' is
    'dus' for sampler=dus and 'random' for the other count-grid samplers (and, in pipeline.search, for the searches
    other than the lattice's DP)."""
    if check_order(order) == "auto":
        return "dus" if sampler == "dus" else "random"
    own = {"dus": "dus", "shuffle": "kgillespie"}.get(order)
    if own is not None and sampler != own:
        what = "DUS's dilated order" if order == "dus" else "k-Gillespie's uniformly random positions"
        raise ValueError(f"jys.order={order} is J for {what}; {sampler} reveals other positions (use "
                         "jys.order=random or auto)")
    return order


def _checked_order(order, M: int, L: int) -> torch.Tensor:
    """The order as [M, L] long, one permutation of the L positions per sequence (an [L] one repeated)."""
    order = torch.as_tensor(order, dtype=torch.long)
    shape = list(order.shape)
    if order.dim() == 1 and shape == [L]:
        order = order.expand(M, L)
    if list(order.shape) != [M, L] or not torch.equal(order.sort(1).values, torch.arange(L).expand(M, L)):
        raise ValueError(f"the order must be a permutation of the {L} positions ([L] or one per sequence [{M}, {L}]), "
                         f"got shape {shape}: {order.reshape(-1)[:8].tolist()}…")
    return order


def _mask_state(model) -> int:
    """The absorbing kernel's mask state (its data states are 0 … mask − 1); refused for other kernels."""
    mask = model.process.kernel.mask
    if mask is None:
        raise ValueError("an order of revealing is a property of absorbing kernels (count-grid samplers)")
    return mask


def _slot_laws(model, x: torch.Tensor, slots: torch.Tensor, t: torch.Tensor, mask: int) -> torch.Tensor:
    """p(x_{o_j} | x) at each sequence's slots [B, n] (masked in x), from one read at times t [B]: [B, n, S0] float64;
    the float64 ratios are built for those positions alone."""
    out = model(x, t)
    values = out.values.gather(1, slots[..., None].expand(-1, -1, out.values.shape[-1]))
    ratio = concrete_ratios(type(out)(out.kind, values), x.gather(1, slots), t, model.process)[..., :mask]
    return ratio / ratio.sum(-1, keepdim=True)


def _kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p ‖ q) over the last dimension (0 log 0 = 0)."""
    return torch.where(p > 0, p * (torch.log(p.clamp_min(1e-300)) - torch.log(q.clamp_min(1e-300))), 0.0).sum(-1)


def refined_draw(model, sampler: str, num: int, length: int, generator: torch.Generator, batch_size: int,
                 progress: bool = False, order: torch.Tensor | None = None):
    """The refined path's own law: a fixed-order sampler revealing one token per call (DUS's order, or `order`),
    `num` sequences as run_sampler draws them (its SampleResult)."""
    times = times_from_counts(list(range(length + 1)), model.process, length)
    return run_sampler(model, sampler, times, num, length, generator, batch_size=batch_size, progress=progress,
                       order=order)


def order_terms(model, x0: torch.Tensor, order: torch.Tensor, batch_size: int = 512, weights: torch.Tensor | None = None,
                max_bytes: int = 2**30, progress: bool = False, per_sequence: bool = False) -> tuple[torch.Tensor, int]:
    """D [L + 1, L + 1] float64: D[k, k′] = Σ_{j=k}^{k′−1} KL(p(x_{o_j} | X_j) ‖ p(x_{o_j} | X_k)), its mean over the
    sequences of x0 [M, L] (or their mean under `weights` [M], summing to 1), for k < k′ (0 elsewhere); and the
    model calls taken. order: a permutation of the positions [L], or one per sequence [M, L]. Reads are taken from
    count L − 1 down to 0, so each slot's refined law p(x_{o_j} | X_j) is kept (float64, L·M·S0 numbers, at most
    max_bytes) when the coarse reads of the counts below it arrive. per_sequence: D of each sequence [M, L + 1, L + 1]
    instead of their mean (weights unused), for paired comparisons of grids."""
    process, mask = model.process, _mask_state(model)
    M, L = x0.shape
    order = _checked_order(order, M, L)
    if L * M * mask * 8 > max_bytes:
        raise ValueError(f"J for a fixed order keeps every slot's refined law: {L} × {M} sequences × {mask} states in "
                         f"float64 is {L * M * mask * 8 / 2**30:.2f} GiB, above jys.max_bytes ({max_bytes / 2**30:.2f} "
                         "GiB); lower jys.lattice_samples or raise jys.max_bytes")
    w = torch.full((M,), 1.0 / M, dtype=F64) if weights is None else torch.as_tensor(weights, dtype=F64)
    times = count_times(torch.arange(L), process, L)  # the sampler's time at each count
    fine = torch.empty(L, M, mask, dtype=F64)  # fine[j]: p(x_{o_j} | X_j), from the read at count j
    D = torch.zeros(M if per_sequence else 1, L + 1, L + 1, dtype=F64)
    calls = 0
    bar = progress_bar(total=L, desc="JYS order reads", leave=False, enabled=progress)
    for k in range(L - 1, -1, -1):
        for b in range(0, M, batch_size):
            pos = order[b:b + batch_size, k:]  # the masked positions
            xb = x0[b:b + batch_size].scatter(1, pos, mask)
            probs = _slot_laws(model, xb, pos, times[k].expand(xb.shape[0]), mask)  # p(x_{o_j} | X_k), j = k … L − 1
            calls += 1
            fine[k, b:b + batch_size] = probs[:, 0]
            f = fine[k:, b:b + batch_size].transpose(0, 1)  # [B, L − k, S0]
            kl = _kl(f, probs)
            if per_sequence:
                D[b:b + batch_size, k, k + 1:] = kl.cumsum(1)  # the slot j = k term is 0: one read
            else:
                D[0, k, k + 1:] += (w[b:b + batch_size, None] * kl.cumsum(1)).sum(0)
        bar.update(1)
    bar.close()
    return (D if per_sequence else D[0]), calls


def sampler_order_terms(model, x0: torch.Tensor, order: torch.Tensor, starts: list[tuple[int, int]] | None = None,
                        seed: int = 0, batch_size: int = 512, weights: torch.Tensor | None = None,
                        progress: bool = False, per_sequence: bool = False, max_bytes: int = 2**30
                        ) -> tuple[torch.Tensor, int]:
    """D_s [L + 1, L + 1] float64: J's step terms in the sampler's direction. The coarse step from count k draws the
    tokens y of slots k … k′ − 1 each from q_j = p(x_{o_j} | X_k); the refined path reveals them one per call, slot
    j from p(x_{o_j} | X_k, y_k … y_{j−1}). The chain rule read on the coarse step's own tokens gives

        D_s(k, k′) = E_{y ~ coarse} Σ_{j=k}^{k′−1} KL( q_j ‖ p(x_{o_j} | X_k, y_k … y_{j−1}) ),

    the KL of the coarse step's law of those tokens from the refined path's, given X_k (KL(coarse ‖ refined), where
    order_terms is KL(refined ‖ coarse)): it charges the coarse step for drawing together tokens the refined path
    would rarely draw together (a sample's cross-entropy pays that), where order_terms charges it for missing
    combinations the refined path makes. One y per sequence and start (seeded by `seed` and k), each KL over x_{o_j}
    exact. X_k comes from x0 [M, L] (the data standing for the sampler's states); J = Σ_i D_s(k_{i−1}, k_i) is
    additive over steps, so the DP over counts applies. starts: (k, end) pairs, D_s[k, k′] filled for k < k′ ≤ end
    (default every k with end L); the rest is 0. Cost: one read at each k and one per j in k + 1 … end − 1, per
    batch of sequences (L(L + 1)/2 reads for the whole table, against order_terms' L); returns D_s (per_sequence:
    each sequence's [M, L + 1, L + 1], weights unused) and those reads. On x0 drawn from a grid's own output, the
    steps of that grid read at its own counts, Σ_i D_s(k_{i−1}, k_i) is KL(grid output ‖ refined) by the chain rule."""
    process, mask = model.process, _mask_state(model)
    M, L = x0.shape
    order = _checked_order(order, M, L)
    starts = [(k, L) for k in range(L)] if starts is None else [(int(k), int(e)) for k, e in starts]
    for k, e in starts:
        if not 0 <= k < e <= L:
            raise ValueError(f"a start (k, end) must have 0 <= k < end <= {L}, got ({k}, {e})")
    longest = max(e - k for k, e in starts)
    if 2 * M * longest * mask * 8 > max_bytes:  # a start's coarse laws, and as many context rows' copies of them
        raise ValueError(f"the sampler's direction keeps a start's coarse laws twice: 2 × {M} sequences × {longest} "
                         f"slots × {mask} states in float64 is {2 * M * longest * mask * 8 / 2**30:.2f} GiB, above max_bytes "
                         f"({max_bytes / 2**30:.2f} GiB); read fewer sequences or shorter steps")
    w = torch.full((M,), 1.0 / M, dtype=F64) if weights is None else torch.as_tensor(weights, dtype=F64)
    times = count_times(torch.arange(L), process, L)
    D = torch.zeros(M, L + 1, L + 1, dtype=F64)
    reads = 0

    def batched_laws(x: torch.Tensor, slots: torch.Tensor, t: torch.Tensor, against: torch.Tensor | None = None):
        """p(x_{o_j} | x) at each sequence's slots [B, n] (positions masked in x), read at times t [B]; with `against`
        [B, S0] (one slot per row), KL(against ‖ p) per row instead, so the reads' laws are never all held."""
        parts = []
        for b in range(0, x.shape[0], batch_size):
            probs = _slot_laws(model, x[b:b + batch_size], slots[b:b + batch_size], t[b:b + batch_size], mask)
            if against is not None:
                probs = _kl(against[b:b + batch_size], probs[:, 0])
            parts.append(probs)
        return torch.cat(parts)

    bar = progress_bar(total=len(starts), desc="JYS order reads (sampler's direction)", leave=False, enabled=progress)
    for k, end in starts:
        pos = order[:, k:end]  # slots k … end − 1
        xk = x0.scatter(1, order[:, k:], mask)  # X_k
        q = batched_laws(xk, pos, times[k].expand(M))  # [M, end − k, S0]
        reads += -(-M // batch_size)
        n = end - k - 1  # slots k + 1 … end − 1 get a refined read
        if n > 0:
            g = torch.Generator().manual_seed(seed * 1_000_003 + k)
            # slot j's uniform, whatever the end: grids sharing a start share their coarse tokens
            u = torch.rand((L - k, M, 1), generator=g, dtype=F64)[:n].transpose(0, 1).contiguous()
            y = inverse_cdf(q[:, :-1], u)  # coarse tokens of slots k … end − 2
            # context c (of n): X_k with slots k … k + c filled by y; read at count k + c + 1 for slot k + c + 1
            filled = torch.arange(n)[:, None] >= torch.arange(n)[None, :]  # [n contexts, n slots]
            xs = xk[None].expand(n, M, L).clone()
            vals = torch.where(filled[:, None, :], y[None], mask)  # [n, M, n]
            xs.scatter_(2, pos[None, :, :n].expand(n, M, n), vals)
            xs = xs.reshape(n * M, L)
            nxt = pos[:, 1:].T.reshape(n * M, 1)  # slot k + c + 1 of each context
            qj = q[:, 1:].transpose(0, 1).reshape(n * M, -1)  # the coarse law of each context's slot
            kl = batched_laws(xs, nxt, times[k + 1:end].repeat_interleave(M), against=qj).reshape(n, M)
            reads += -(-(n * M) // batch_size)
            D[:, k, k + 2:end + 1] = kl.T.cumsum(1)
        bar.update(1)
    bar.close()
    return (D if per_sequence else (w[:, None, None] * D).sum(0)), reads


ROUNDING = 1e-12  # nats: D is rounded to this before the DP (named in the cache key)


def order_table(model, x0: torch.Tensor, order: torch.Tensor, batch_size: int = 512,
                max_bytes: int = 2**30, progress: bool = False) -> tuple[torch.Tensor, list[int], int]:
    """D [P, P] between the counts 0 and first_count … L (the counts some t < 1 reaches), inf where a step does not
    raise the count, with those counts and the model calls taken."""
    D, calls = order_terms(model, x0, order, batch_size, max_bytes=max_bytes, progress=progress)
    # rounded to 1e-12 nats: many grids tie at J = 0 (tokens independent given the revealed ones), and rounding noise
    # in the sums' order would otherwise pick among them differently on another machine
    D = torch.round(D / ROUNDING) * ROUNDING
    L = x0.shape[1]
    counts = [0] + list(range(first_count(model.process, L), L + 1))
    idx = torch.tensor(counts)
    D = torch.where(idx[:, None] < idx[None, :], D[idx][:, idx], math.inf)
    return D, counts, calls


def sampler_order(order: str, length: int, sequences: int, generator: torch.Generator) -> torch.Tensor:
    """The order a resolved jys.order names (a user's order, unmask.order, is passed in by pipeline.search instead):
    DUS's dilated order [L], or (shuffle) a uniformly random permutation per sequence [M, L]. k-Gillespie unmasks a
    uniformly random subset of the masked positions at each step, which is revealing them in a uniformly random order
    drawn before sampling; so E_order J is the KL between its reveal path (order and tokens) and the refined one's,
    and under the exact oracle bounds the KL of its output from above (convexity)."""
    if order == "dus":
        return dilated_order(length)
    if order == "shuffle":
        return torch.stack([torch.randperm(length, generator=generator) for _ in range(sequences)])
    raise ValueError(f"no order of positions for jys.order={order!r}")
