"""ReMDM (Wang et al., "Remasking discrete diffusion models with inference-time scaling", arXiv 2503.00307): the
ancestral (MDLM) step of an absorbing kernel, plus a chance σ that an unmasked token is masked again, so later steps
can revise it. Read from the paper and its code (kuleshov-group/remdm, `diffusion.py`, `_ddpm_caching_update`).

With α the chance a token is unmasked (here e^{−σ̄(t)} of the project's process) and a step t → s (α_s ≥ α_t):

  unmasked token:  remasked with probability σ_t, else kept;
  masked token:    set to y ~ p(x_0 | x_t) with probability (α_s − (1 − σ_t) α_t)/(1 − α_t), else kept masked,

σ_t ∈ [0, σ_max], σ_max = min(1, (1 − α_s)/α_t). Strategies (the paper's names, its OpenWebText values as defaults):
- 'cap': σ_t = min(η, (1 − α_s)/α_t), η = 0.008;
- 'rescale': σ_t = η · σ_max, η = 0.015;
- 'loop': the grid is ReMDM's own clock u ∈ [1, ε]; α(u) = (1 − u) α_on/(1 − t_on) above t_on, α_on on [t_off, t_on],
  1 − u (1 − α_on)/t_off below t_off (η = 0.02, t_on = 0.55, t_off = 0.05, α_on = 0.9); steps inside [t_off, t_on]
  remask with σ = η (the model is read at the one process time where α = α_on), the others are plain MDLM steps. The
  model is read at the process time with e^{−σ̄} = α(u). A JYS grid (process time) applies to 'cap' and 'rescale'.
Deviations: no nucleus filtering of p(x_0 | x_t) (the paper's top-p 0.9 for text), and the 'conf' strategy (σ per
token from its confidence when it was unmasked) is not implemented.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from models.protocol import denoised_probs
from samplers.steps import rows, sample_by_positions

F64 = torch.float64
STRATEGIES = ("loop", "cap", "rescale")
PUBLISHED_ETA = {"cap": 0.008, "rescale": 0.015, "loop": 0.02}


@dataclass(frozen=True)
class ReMDM:
    strategy: str = "loop"
    eta: float | None = None  # None: the published value of the strategy (PUBLISHED_ETA)
    t_on: float = 0.55
    t_off: float = 0.05
    alpha_on: float = 0.9

    def __post_init__(self):
        if self.strategy not in STRATEGIES:
            raise ValueError(f"unknown remdm.strategy {self.strategy!r}; expected one of {STRATEGIES}")
        if self.eta is not None and not 0.0 <= self.eta <= 1.0:
            raise ValueError(f"remdm.eta is a probability in [0, 1], got {self.eta}")
        if not 0.0 < self.t_off < self.t_on < 1.0 or not 0.0 < self.alpha_on < 1.0:
            raise ValueError(f"remdm's loop needs 0 < t_off < t_on < 1 and 0 < alpha_on < 1, got t_off={self.t_off}, "
                             f"t_on={self.t_on}, alpha_on={self.alpha_on}")

    @property
    def rate(self) -> float:
        return PUBLISHED_ETA[self.strategy] if self.eta is None else float(self.eta)

    def alpha(self, u: float, process) -> float:
        """The chance a token is unmasked at the sampler's clock u (process time, except under 'loop')."""
        if self.strategy != "loop":
            return float(torch.exp(-process.sigma(torch.tensor([u], dtype=F64)))[0])
        if u > self.t_on:
            return (1.0 - u) * self.alpha_on / (1.0 - self.t_on)
        if u >= self.t_off:
            return self.alpha_on
        return 1.0 - u * (1.0 - self.alpha_on) / self.t_off

    def sigma(self, t: float, s: float, a_t: float, a_s: float) -> float:
        """The remasking probability of the step t → s."""
        if a_t <= 0.0:
            return 0.0  # nothing unmasked yet
        cap = min(1.0, (1.0 - a_s) / a_t)
        if self.strategy == "cap":
            return min(self.rate, cap)
        if self.strategy == "rescale":
            return self.rate * cap
        return min(self.rate, cap) if self.t_off <= s < t <= self.t_on else 0.0


def model_time(alpha: float, process) -> float:
    """The process time at which a token is unmasked with chance alpha (1 where alpha is 0: all masked)."""
    if alpha <= 0.0:
        return 1.0
    return float(process.noise.inverse(torch.tensor([-math.log(alpha)], dtype=F64)).clamp(0.0, 1.0)[0])


def remdm_step(model, x, t, s, generator, remdm: ReMDM = ReMDM()):
    """One ReMDM step t → s of the sampler's clock (module docstring). Draws the same uniforms as the Tweedie and
    Euler steps (one per position), so with σ = 0 it is their step draw for draw."""
    proc = model.process
    mask = proc.kernel.mask
    a_t, a_s = remdm.alpha(t, proc), remdm.alpha(s, proc)
    sig = remdm.sigma(t, s, a_t, a_s)
    tau = t if remdm.strategy != "loop" else model_time(a_t, proc)
    out = model(x, torch.full((x.shape[0],), tau, dtype=F64))
    unmask = (a_s - (1.0 - sig) * a_t) / (1.0 - a_t)
    stay_masked = max(0.0, (1.0 - a_s - sig * a_t) / (1.0 - a_t))

    def probs(b, l):
        o, xs, ts = rows(out, x, tau, b, l)
        p = torch.zeros(xs.shape[1], proc.num_states, dtype=F64)
        masked = xs[0] == mask
        d = denoised_probs(o, xs, ts, proc)[0, masked]  # a score model's Tweedie denoiser is not normalized
        p[masked, :mask] = unmask * d / d.sum(-1, keepdim=True)
        p[masked, mask] = stay_masked
        kept = ~masked
        p[kept, xs[0, kept]] = 1.0 - sig
        p[kept, mask] = sig
        return p

    movable = None if sig > 0 else proc.kernel.movable(x)  # σ = 0: unmasked tokens stay, as Tweedie's do
    return sample_by_positions(probs, x, proc.num_states, generator, movable)
