"""The exact law of a sampler's output on a state space small enough to enumerate (S^L sequences): the prior, each
step's transition matrix over all sequences (a product over tokens of the step's per-token law, as samplers/steps.py
draws it), then the noise-removal draw. It judges schedules with no sampling noise (scripts/exact_grid_kl.py); the
tests check it against the samplers' draws (chi-square)."""
from __future__ import annotations

import torch

from models.protocol import concrete_ratios, denoised_probs, rates_from_ratios

F64 = torch.float64
SAMPLERS = ("euler", "tau_leaping")


def product_law(q: torch.Tensor) -> torch.Tensor:
    """[N, L, S] per-token laws of each of N states -> [N, S^L] joint law (tokens independent), indexed as
    itertools.product (first token most significant)."""
    N, L, S = q.shape
    T = torch.ones(N, 1, dtype=F64)
    for l in range(L):
        T = (T[:, :, None] * q[:, l, None, :]).reshape(N, -1)
    return T


def sampler_law(model, states: torch.Tensor, grid: list[float], sampler: str = "euler", final: str = "sample") -> torch.Tensor:
    """The exact law over `states` (all S^L sequences) of the sampler's samples on `grid`, with the noise-removal
    draw at its last time; each step's per-token law is samplers/steps.py's: Euler's (t − s)·R̂ with the stay
    clipped at 0, or τ-leaping's under a categorical kernel with multi_jump=reject (one Poisson jump moves the
    token to y ∝ λ_y, none or several leave it). [S^L]"""
    if sampler not in SAMPLERS:
        raise ValueError(f"exact laws are written for samplers {SAMPLERS}, got {sampler!r}")
    if final not in ("sample", "argmax"):
        raise ValueError(f"final {final!r}; expected 'sample' or 'argmax'")
    proc = model.process
    if proc.kernel.mask is not None or proc.kernel.ordinal:
        raise ValueError("exact laws are written for the uniform kernel (its prior is uniform, its jumps categorical)")
    law = torch.full((states.shape[0],), 1.0 / states.shape[0], dtype=F64)  # the uniform kernel's prior
    for t, s in zip(grid, grid[1:]):
        tb = torch.full((states.shape[0],), t, dtype=F64)
        rates = rates_from_ratios(concrete_ratios(model(states, tb), states, tb, proc), states, tb, proc)
        lam = ((t - s) * rates).scatter(-1, states.unsqueeze(-1), 0.0)
        total = lam.sum(-1, keepdim=True)
        if sampler == "euler":
            q = lam.scatter(-1, states.unsqueeze(-1), (1 - total).clamp_min(0.0))
        else:
            move = total * torch.exp(-total)
            q = (move * lam / total.clamp_min(1e-300)).scatter(-1, states.unsqueeze(-1), 1 - move)
        law = law @ product_law(q / q.sum(-1, keepdim=True))
    tb = torch.full((states.shape[0],), grid[-1], dtype=F64)
    q = denoised_probs(model(states, tb), states, tb, proc)
    if final == "argmax":
        q = torch.nn.functional.one_hot(q.argmax(-1), q.shape[-1]).to(F64)
    return law @ product_law(q / q.sum(-1, keepdim=True))
