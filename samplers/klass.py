"""KLASS (KL-Adaptive Stability Sampling, arXiv 2511.05664; read from its code, shkim0116/KLASS,
`llada_klass.py::stable_confident_decode`) for absorbing kernels, over a count grid.

Each call reads p(x_0,l | x_t) at every masked position and keeps, per position, the KL of this call's p from the
previous call's, KL(p_now ‖ p_before), over the last H calls (`history`). A masked token is *ready* when its
confidence max_y p(y) exceeds `conf` and its last H KL values all lie below `kl`: its prediction has settled. Every
ready token is revealed; where fewer are ready than the grid's count asks, the most confident others are revealed
up to it (LLaDA's fallback: the top-k by confidence, k from the schedule). So a sequence never takes more calls than
the grid's steps, and takes fewer where tokens settle early; each sequence's calls are counted (as EB-Sampler's).
Deviations: tokens are drawn from p, not taken as its argmax (as for every peer here); the whole sequence is one
block; "at least the grid's count" where the code reveals the ready tokens alone when any are ready (which can leave
masks at the end of a block); the history starts empty (the code's starts from a zero p, ~27.6 nats).
Memory: the previous call's p is kept for the batch, [B, L, S0] float32.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from samplers.steps import F64, sample_by_positions
from samplers.unmasking import count_times, data_probs, tie_break


@dataclass(frozen=True)
class KLASS:
    conf: float = 0.9  # the code's defaults (its LLaDA scripts use 0.6–0.9 and 0.01–0.015)
    kl: float = 0.01
    history: int = 2

    def __post_init__(self):
        if not 0.0 <= self.conf <= 1.0 or not self.kl >= 0.0 or not (isinstance(self.history, int) and self.history >= 1):
            raise ValueError(f"klass needs conf in [0, 1], kl >= 0 and history >= 1 (calls), got conf={self.conf}, "
                             f"kl={self.kl}, history={self.history}")


def ready_tokens(p: torch.Tensor, kl_history: torch.Tensor, masked: torch.Tensor, rule: KLASS) -> torch.Tensor:
    """KLASS's rule: masked, confident (max p > conf) and stable (every KL of the last `history` calls < kl).
    p [B, L, S0], kl_history [B, L, H], masked [B, L] -> [B, L] bool."""
    return masked & (p.max(-1).values > rule.conf) & (kl_history < rule.kl).all(-1)


def klass_sample(model, x: torch.Tensor, generator: torch.Generator, counts: list[int], rule: KLASS = KLASS()):
    """KLASS from x (all masked) over the grid's unmasked counts (counts[0] = 0 < … < counts[-1] = L): each call reveals
    the ready tokens, and at least enough to reach the next count of the grid above the sequence's own (a sequence
    ahead of the grid skips the counts it has passed). Returns (samples [B, L], model calls of each sequence)."""
    proc = model.process
    mask, S0 = proc.kernel.mask, proc.data_states
    B, L = x.shape
    x = x.clone()
    calls = torch.zeros(B, dtype=torch.long)
    before = torch.zeros(B, L, S0, dtype=torch.float32)
    kl_history = torch.full((B, L, rule.history), torch.inf, dtype=F64)
    seen = torch.zeros(B, L, dtype=torch.bool)  # positions with a p from an earlier call
    grid = torch.tensor(counts, dtype=torch.long)
    for _ in counts[1:]:
        active = (x == mask).any(1).nonzero().squeeze(1)
        if active.numel() == 0:
            break
        xa = x[active]
        masked = xa == mask
        times = count_times((~masked).sum(1), proc, L)
        out = model(xa, times)
        calls[active] += 1
        b, l = masked.nonzero(as_tuple=True)
        p = torch.zeros(len(active), L, S0, dtype=F64)
        p[b, l] = data_probs(out, xa, times, b, l, proc)
        q = before[active].to(F64)
        kl = (p * (torch.log(p.clamp_min(1e-300)) - torch.log(q.clamp_min(1e-300)))).sum(-1)
        kl = torch.where(seen[active], kl, torch.inf)
        hist = torch.cat([kl_history[active, :, 1:], kl.unsqueeze(-1)], dim=-1)
        ready = ready_tokens(p, hist, masked, rule)
        have = (~masked).sum(1)
        need = grid[torch.searchsorted(grid, have, right=True).clamp_max(len(counts) - 1)] - have
        n = torch.maximum(ready.sum(1), need)
        conf = torch.where(masked, p.max(-1).values, -torch.inf)
        order = tie_break(torch.where(ready, conf + 2.0, conf), generator).argsort(dim=1, descending=True)
        first = torch.arange(L).expand_as(xa) < n.unsqueeze(1)
        chosen = torch.zeros_like(first).scatter_(1, order, first)
        x[active] = sample_by_positions(lambda bb, ll: data_probs(out, xa, times, bb, ll, proc), xa, S0, generator,
                                        chosen)
        before[active], kl_history[active], seen[active] = p.float(), hist, seen[active] | masked
    return x, calls
