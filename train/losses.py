"""SEDD's denoising score entropy, for any kernel with closed-form rows (absorbing, uniform)."""
from __future__ import annotations

import torch

from models.kernels import Absorbing
from models.process import ForwardProcess


def score_entropy(log_score: torch.Tensor, x_t: torch.Tensor, x0: torch.Tensor, t: torch.Tensor,
                  process: ForwardProcess) -> torch.Tensor:
    """Per-sequence loss [B]: dσ̄/dt · Σ_l Σ_{y≠x_l} Q[y, x_l] (e^{s_y} − r_y s_y + r_y(log r_y − 1)),
    r_y = P_t[x0, y] / P_t[x0, x_l] the true ratio. Absorbing: masked positions only, as in SEDD."""
    if isinstance(process.kernel, Absorbing):
        return _absorbing_score_entropy(log_score, x_t, x0, t, process)
    kernel = process.kernel
    sigma = process.sigma(t)
    rows = kernel.transition_rows(x0, sigma)  # [B, L, S] float64
    ratio = (rows / rows.gather(-1, x_t.unsqueeze(-1))).to(log_score.dtype)
    weight = kernel.rate_cols(x_t).to(log_score.dtype).scatter(-1, x_t.unsqueeze(-1), 0.0)
    const = torch.where(ratio > 0, ratio * (torch.log(ratio.clamp_min(1e-30)) - 1), torch.zeros_like(ratio))
    per_state = log_score.exp() - ratio * log_score + const
    per_state = torch.where(weight != 0, weight * per_state, torch.zeros_like(per_state))
    return process.sigma_rate(t).to(log_score.dtype) * per_state.sum((1, 2))


def _absorbing_score_entropy(log_score, x_t, x0, t, process):
    """The same sum in closed form, on masked rows only (no [B, L, S] temporaries at large vocabularies):
    at a masked token the only nonzero ratio is r_{x0} = 1 / (e^σ̄ − 1), and Q[y, MASK] = 1 for y ≠ MASK."""
    mask = process.kernel.mask
    masked = x_t == mask  # [B, L]
    ratio = (1 / torch.expm1(process.sigma(t))).to(log_score.dtype)[:, None].expand_as(x_t)[masked]  # [M]
    scores = log_score[masked]  # [M, S]
    pos = scores[:, :mask].exp().sum(-1)
    neg = ratio * scores.gather(-1, x0[masked].unsqueeze(-1)).squeeze(-1)
    per_token = torch.zeros(x_t.shape, dtype=log_score.dtype, device=log_score.device)
    per_token[masked] = pos - neg + ratio * (ratio.log() - 1)
    return process.sigma_rate(t).to(log_score.dtype) * per_token.sum(1)
