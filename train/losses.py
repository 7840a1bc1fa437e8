"""Training losses: SEDD's denoising score entropy (score networks) and tauLDR's continuous-time
ELBO (denoising networks, p(x0 | x_t))."""
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


def forward_jump(x_t: torch.Tensor, t: torch.Tensor, process: ForwardProcess, generator: torch.Generator) -> torch.Tensor:
    """x̃: x_t after one jump of the forward chain at time t (tauLDR): a position drawn in proportion to
    its total rate out, then a new state in proportion to the rates out of its state. [B, L] long"""
    B, L = x_t.shape
    Q = process.kernel.rate_matrix()  # [S, S]; β(t) scales every row alike, so it cancels here
    out = Q[x_t].clone()  # [B, L, S]
    out.scatter_(-1, x_t.unsqueeze(-1), 0.0)
    pos = torch.multinomial(out.sum(-1), 1, generator=generator).squeeze(-1)  # [B]
    rows = out[torch.arange(B), pos]  # [B, S]
    new = torch.multinomial(rows, 1, generator=generator).squeeze(-1)
    x_tilde = x_t.clone()
    x_tilde[torch.arange(B), pos] = new
    return x_tilde


def ct_elbo(logits: torch.Tensor, x_tilde: torch.Tensor, x0: torch.Tensor, t: torch.Tensor,
            process: ForwardProcess, nll_weight: float = 0.001, ratio_eps: float = 1e-9) -> torch.Tensor:
    """tauLDR's loss (GenericAux, one forward pass): the negative continuous-time ELBO, averaged over
    the batch, plus nll_weight × the cross-entropy of p(x0 | x̃). logits [B, L, S] are the network's at
    (x̃, t); x̃ = forward_jump(x_t). With P = P_t[x0, ·] and R = dσ̄/dt · Q:

      reg = Σ_l Σ_{y≠x̃_l} R̂_t(x̃ → x̃ with x̃_l ← y), R̂ = R[y, x̃_l] Σ_{x0'} p(x0'|x̃) P[x0', y] / P[x0', x̃_l]
      sig = − Σ_l Σ_{x≠x̃_l} R[x, x̃_l] P[x0_l, x]/P[x0_l, x̃_l] · log(Σ_{x0'} p(x0'|x̃) P[x0', x]/P[x0', x̃_l]),
            normalized by the same weights over the total forward rate out of (x̃ with x̃_l ← x)

    as the published code computes them (float32, ratio_eps in every denominator); memory B·L·S.
    """
    B, L, S = logits.shape
    dtype, dev = logits.dtype, logits.device
    t = t.cpu()  # the kernel's tables live on the CPU, in float64
    P = process.kernel.transition(process.sigma(t)).to(device=dev, dtype=dtype)  # [B, S(x0), S(x)]
    R = (process.sigma_rate(t).reshape(-1, 1, 1) * process.kernel.rate_matrix()).to(device=dev, dtype=dtype)
    probs = torch.softmax(logits, -1)  # [B, L, S(x0)]
    b = torch.arange(B, device=dev)[:, None]
    not_here = torch.ones(B, L, S, device=dev, dtype=dtype).scatter_(-1, x_tilde.unsqueeze(-1), 0.0)
    into_here = P.transpose(1, 2)[b, x_tilde] + ratio_eps  # [B, L, S(x0')] = P[x0', x̃_l]
    rate_in = R.transpose(1, 2)[b, x_tilde] * not_here  # [B, L, S(y)] = R[y, x̃_l], y ≠ x̃_l
    weighted = probs / into_here  # p(x0'|x̃) / P[x0', x̃_l]
    reg = (weighted * (rate_in @ P.transpose(1, 2))).sum((1, 2))  # Σ_{y} R[y, x̃_l] P[x0', y]
    ratio_hat = weighted @ P  # [B, L, S(x)]: Σ_{x0'} p P[x0', x] / P[x0', x̃_l]
    true_w = P[b, x0] / (P[b, x0, x_tilde] + ratio_eps).unsqueeze(-1)  # [B, L, S(x)]: P[x0_l, x]/P[x0_l, x̃_l]
    out_rate = -torch.diagonal(R, dim1=1, dim2=2)  # [B, S]: total rate out of each state
    base = out_rate.gather(1, x_tilde).sum(1)  # [B]
    Z = base[:, None, None] - out_rate.gather(1, x_tilde).unsqueeze(-1) + out_rate[:, None, :]  # [B, L, S]
    sig_sum = (rate_in * true_w * torch.log(ratio_hat + ratio_eps)).sum((1, 2))
    sig_norm = (rate_in * true_w / Z).sum((1, 2))
    nll = torch.nn.functional.cross_entropy(logits.reshape(B * L, S), x0.reshape(-1))
    return (-sig_sum / sig_norm).mean() + reg.mean() + nll_weight * nll
