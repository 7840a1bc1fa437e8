"""The model protocol: a model maps (x_t, t) to denoiser probabilities or log concrete scores,
and one set of functions turns either into what samplers and the KLUB need.

A model is any callable `model(x [B, L] long, t [B] float) -> ModelOutput` with an attribute
`process` (its ForwardProcess), and optionally `output`, the kind it returns (output_of). Denoiser
probabilities are over the data states [B, L, S0]; log scores are over all states [B, L, S] with 0
at the input token.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from models.process import ForwardProcess

KINDS = ("denoiser", "score")


@dataclass
class ModelOutput:
    kind: str  # "denoiser" (p(x0_l | x_t), tauLDR/MDLM) or "score" (log p_t(y)/p_t(x), SEDD)
    values: torch.Tensor

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"model output kind {self.kind!r}; expected one of {KINDS}")


def output_of(model) -> str | None:
    """The kind of output a model gives ('denoiser' or 'score'), from its attribute `output`; None where it does not
    say so (no such attribute, or one that is no kind name, e.g. a network's layer): then nothing that needs a
    denoiser is chosen for it by default."""
    kind = getattr(model, "output", None)
    return kind if isinstance(kind, str) and kind in KINDS else None


def concrete_ratios(out: ModelOutput, x: torch.Tensor, t: torch.Tensor, process: ForwardProcess) -> torch.Tensor:
    """r_y ≈ p_t(x with x_l ← y) / p_t(x), float64 [B, L, S]; r at the input token is 1."""
    if out.kind == "score":
        return out.values.to(torch.float64).exp()
    return process.kernel.ratio_from_denoiser(out.values, x, process.sigma(t))


def rates_from_ratios(ratio: torch.Tensor, x: torch.Tensor, t: torch.Tensor, process: ForwardProcess) -> torch.Tensor:
    """Reverse rates R̂_t(x → x with x_l ← y) = dσ̄/dt · Q[y, x_l] · r_y for y ≠ x_l; 0 at y = x_l. [B, L, S]"""
    rates = process.sigma_rate(t).reshape(-1, 1, 1) * process.kernel.rate_cols(x) * ratio
    return rates.scatter(-1, x.unsqueeze(-1), 0.0)


def reverse_rates(out: ModelOutput, x: torch.Tensor, t: torch.Tensor, process: ForwardProcess) -> torch.Tensor:
    return rates_from_ratios(concrete_ratios(out, x, t, process), x, t, process)


def tweedie_probs(out: ModelOutput, x: torch.Tensor, t: torch.Tensor, dsigma: torch.Tensor,
                  process: ForwardProcess) -> torch.Tensor:
    """SEDD's analytic step removing noise Δσ: p(x_l ← y) ∝ [expm(−ΔσQ)ᵀ r]_y · P(Δσ)[y, x_l]. [B, L, S]

    Δσ = σ̄(t) − σ̄(s) for a step from t to s; Δσ = σ̄(t) to remove all noise (SEDD's Denoiser)."""
    stag = process.kernel.staggered(concrete_ratios(out, x, t, process), dsigma)
    return (stag * process.kernel.transition_cols(x, dsigma)).clamp_min(0.0)


def denoised_probs(out: ModelOutput, x: torch.Tensor, t: torch.Tensor, process: ForwardProcess) -> torch.Tensor:
    """p(x_0,l | x_t) over the data states [B, L, S0], for the final noise-removal step."""
    if out.kind == "denoiser":
        return out.values.to(torch.float64)
    # Score models: the Tweedie step removing all noise, restricted to data states (SEDD's Denoiser).
    return tweedie_probs(out, x, t, process.sigma(t), process)[..., : process.data_states]
