"""Adaptive unmasking samplers for absorbing kernels: which masked positions each model call reveals.

k-Gillespie (samplers.steps) reveals the grid's count k(s) − k(t) at uniformly random masked positions.
The samplers here choose the positions otherwise:
- `confidence` (MaskGIT / LLaDA's low-confidence remasking): the same counts, at the masked positions where
  the model is most confident: its top probability (`unmask.confidence=max`) or the gap between its two
  top probabilities (`margin`);
- `dus` (Dilated Unmasking Scheduler, arXiv 2506.19037): the same counts, in DUS's dilated order of
  positions, fixed in advance, so that each call reveals positions far from each other (`dilated_order`), or in a
  permutation of the user's (`unmask.order=PATH`, `load_order`);
- `eb` (EB-Sampler, arXiv 2505.24857): no grid; each call sorts the masked positions by entropy and reveals
  the longest prefix whose entropies, less the largest of them, sum to at most γ (`unmask.gamma`), and at
  least one token, so the number of calls is adaptive and differs between sequences.
Every revealed token is drawn from the model's p(x_0,l | x_t) (never its argmax): with one token per call
and the exact denoiser, any rule that picks the next position from the tokens already revealed then draws
the exact law (the chain rule), so the rules differ only in the error of revealing several tokens at once.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from models.protocol import concrete_ratios
from samplers.schedules import first_count, times_from_counts, unmasked_counts
from samplers.steps import F64, position_chunks, sample_by_positions

CONFIDENCES = ("max", "margin")


def data_probs(out, x: torch.Tensor, times: torch.Tensor, b: torch.Tensor, l: torch.Tensor, process) -> torch.Tensor:
    """p(x_0,l | x_t) at masked positions (b[i], l[i]), normalized, [m, S0] float64: the absorbing kernel's
    ratios to the data states are proportional to it (what k-Gillespie draws from). times: [B], each
    sequence's time; the positions are read as m sequences of one position."""
    o = type(out)(out.kind, out.values[b, l].unsqueeze(1))
    p = concrete_ratios(o, x[b, l].unsqueeze(1), times[b], process)[:, 0, : process.kernel.mask]
    return p / p.sum(-1, keepdim=True)


def position_scores(out, x: torch.Tensor, times: torch.Tensor, process, score: str) -> torch.Tensor:
    """A score for every masked position, [B, L] float64 (−inf at revealed ones), from p(x_0,l | x_t):
    'max' its top probability, 'margin' top − second, 'neg_entropy' −H(p). Chunked over positions, so no
    [B, L, S] float64 tensor is held. times: [B], each sequence's time."""
    mask = process.kernel.mask
    B, L = x.shape
    scores = torch.full((B, L), -torch.inf, dtype=F64)
    for sl in position_chunks(B, L, process.num_states):
        xs = x[:, sl]
        ratio = concrete_ratios(type(out)(out.kind, out.values[:, sl]), xs, times, process)[..., :mask]
        p = ratio / ratio.sum(-1, keepdim=True)
        if score == "neg_entropy":
            s = (p * torch.log(p.clamp_min(1e-300))).sum(-1)
        else:
            top = p.topk(2, dim=-1).values
            s = top[..., 0] if score == "max" else top[..., 0] - top[..., 1]
        scores[:, sl] = torch.where(xs == mask, s, -torch.inf)
    return scores


def dilated_order(length: int) -> torch.Tensor:
    """DUS's order of positions (base 2, as its code's dilated levels): stride ⌊L/2⌋, then halved down to 1;
    each level takes the multiples of its stride not taken before, ascending. For 8 positions:
    0 4 | 2 6 | 1 3 5 7. Its first 2^j positions are the multiples of L/2^j (L a power of 2), so a count
    grid with k_i = L^{i/N} reveals exactly DUS's levels of base L^{1/N}. [L] long"""
    order, taken, stride = [], set(), max(length // 2, 1)
    while True:
        level = [p for p in range(0, length, stride) if p not in taken]
        order += level
        taken.update(level)
        if stride == 1:
            return torch.tensor(order, dtype=torch.long)
        stride //= 2


def is_permutation(order, length: int) -> bool:
    """Whether `order` (a sequence of integers) holds each of the positions 0 … length − 1 exactly once."""
    return sorted(int(v) for v in order) == list(range(length))


def load_order(path: str | Path, length: int) -> torch.Tensor:
    """A permutation of the `length` positions from a file: .npy (an integer array) or text (integers separated by
    white space or commas), the first position revealed first. [L] long"""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"unmask.order: no file at {path}; expected a permutation of the {length} positions "
                                "(.npy, or integers in text)")
    if path.suffix == ".npy":
        values = np.load(path, allow_pickle=False)
    else:
        try:
            values = np.array([int(v) for v in path.read_text().replace(",", " ").split()])
        except ValueError as e:
            raise ValueError(f"unmask.order: {path} holds a value that is not an integer ({e})") from None
    if values.ndim != 1 or not np.issubdtype(values.dtype, np.integer) or not is_permutation(values, length):
        raise ValueError(f"unmask.order: {path} must hold a permutation of the positions 0 … {length - 1}, got "
                         f"{values.size} values of shape {list(values.shape)}: {values.reshape(-1)[:8].tolist()}…")
    return torch.as_tensor(values, dtype=torch.long)


def order_digest(order: torch.Tensor) -> str:
    """sha256 of a permutation (its int64 bytes): the identity that samples, schedules and J's table carry."""
    return hashlib.sha256(order.to(torch.int64).numpy().tobytes()).hexdigest()


def reveal(model, x: torch.Tensor, t: float, s: float, generator: torch.Generator, rank) -> torch.Tensor:
    """One call of a count-grid sampler: reveal exactly k(s) − k(t) masked tokens of every sequence, at the
    positions of highest rank(out, x, times) [B, L], each drawn from p(x_0,l | x_t)."""
    proc = model.process
    mask = proc.kernel.mask
    B, L = x.shape
    k_now = int((x[0] != mask).sum())
    n = unmasked_counts([s], proc, L)[0] - k_now
    if n <= 0:
        raise ValueError(f"a count-grid step from t={t:.6g} to s={s:.6g} unmasks {n} tokens; the grid must raise "
                         "the unmasked count at every step (see samplers.schedules.token_counts)")
    tb = torch.full((B,), float(t), dtype=F64)
    out = model(x, tb)
    chosen = torch.zeros_like(x, dtype=torch.bool).scatter_(1, rank(out, x, tb).topk(n, dim=1).indices, True)
    return sample_by_positions(lambda b, l: data_probs(out, x, tb, b, l, proc), x, proc.data_states, generator,
                               chosen)


def confidence_step(model, x, t, s, generator, confidence: str = "max"):
    """Reveal the grid's count at the most confident masked positions (ties at random: tie_break)."""
    if confidence not in CONFIDENCES:
        raise ValueError(f"unknown unmask.confidence {confidence!r}; expected one of {CONFIDENCES}")
    proc = model.process
    return reveal(model, x, t, s, generator,
                  lambda out, x, tb: tie_break(position_scores(out, x, tb, proc, confidence), generator))


def dus_step(model, x, t, s, generator, order: torch.Tensor | None = None):
    """Reveal the grid's count at the first masked positions of DUS's dilated order (or of `order`, [L])."""
    L = x.shape[1]
    priority = torch.empty(L, dtype=F64)
    priority[dilated_order(L) if order is None else order] = -torch.arange(L, dtype=F64)
    mask = model.process.kernel.mask
    return reveal(model, x, t, s, generator,
                  lambda out, x, tb: torch.where(x == mask, priority.expand_as(x), -torch.inf))


def tie_break(scores: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Scores [B, L] made distinct: scores within 1e-9 of each other (after rounding to 1e-9) count as ties,
    broken at random. Under an exact
    denoiser all masked positions start with the same score (and many stay tied), so a fixed order would
    reveal neighbouring positions together; the paper's LLMs rarely tie. −inf stays −inf."""
    u = torch.rand(scores.shape, generator=generator, dtype=F64)
    return (scores * 1e9).round() / 1e9 + u * 1e-10


def entropy_bounded_counts(entropy: torch.Tensor, gamma: float) -> torch.Tensor:
    """EB-Sampler's rule (its Algorithm 1): with a sequence's masked entropies in the order of revealing,
    h_1, …, h_m, reveal the largest prefix j with Σ_{i≤j} h_i − max_{i≤j} h_i ≤ γ, and at least 1 (the left
    side grows with j, so the j that fit are a prefix). entropy: [B, L], that order, +inf past the masked
    ones. Returns [B] long (0 where nothing is masked)."""
    finite = torch.isfinite(entropy)
    h = entropy.where(finite, 0.0)
    fits = (h.cumsum(1) - h.cummax(1).values <= gamma) & finite
    return fits.sum(1).maximum(finite.any(1).long())


def count_times(counts: torch.Tensor, process, length: int) -> torch.Tensor:
    """Each sequence's time for its unmasked count (times_from_counts); counts 1 … first_count − 1, which no
    t < 1 reaches (long L), take first_count's time. [B] float64"""
    low = first_count(process, length)
    return times_from_counts(torch.where((counts > 0) & (counts < low), low, counts).tolist(), process, length)


def check_gamma(gamma) -> float:
    """EB-Sampler's entropy budget per call (unmask.gamma): a number >= 0, in nats."""
    if isinstance(gamma, bool) or not isinstance(gamma, (int, float)) or not gamma >= 0:
        raise ValueError(f"unmask.gamma must be a number >= 0 (nats per call), got {gamma!r}")
    return float(gamma)


def eb_sample(model, x: torch.Tensor, generator: torch.Generator, gamma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """EB-Sampler from x (masked) until no mask is left. Each call takes the sequences that still hold masks,
    at their own time t(k) = the time where k of L tokens are unmasked in expectation (times_from_counts),
    orders their masked positions by entropy (ties at random) and reveals entropy_bounded_counts of them.
    Returns (samples [B, L], model calls of each sequence [B] long)."""
    check_gamma(gamma)
    proc = model.process
    mask = proc.kernel.mask
    B, L = x.shape
    x = x.clone()
    calls = torch.zeros(B, dtype=torch.long)
    while True:
        active = (x == mask).any(1).nonzero().squeeze(1)
        if active.numel() == 0:
            return x, calls
        xa = x[active]
        times = count_times((xa != mask).sum(1), proc, L)
        out = model(xa, times)
        calls[active] += 1
        neg_entropy = position_scores(out, xa, times, proc, "neg_entropy")  # −inf at revealed positions
        order = tie_break(neg_entropy, generator).argsort(dim=1, descending=True)
        n = entropy_bounded_counts(-neg_entropy.gather(1, order), gamma)
        first = torch.arange(L).expand_as(xa) < n.unsqueeze(1)  # the first n of each sequence's order
        chosen = torch.zeros_like(first).scatter_(1, order, first)
        x[active] = sample_by_positions(lambda b, l: data_probs(out, xa, times, b, l, proc), xa, proc.data_states,
                                        generator, chosen)
