"""The forward CTMC: a noise schedule and a kernel. Q_t = dσ̄/dt · Q, P(x_t|x_0) = expm(σ̄(t) Q)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from models.kernels import Kernel, make_kernel
from models.noise import NoiseSchedule, make_noise


@dataclass
class ForwardProcess:
    noise: NoiseSchedule
    kernel: Kernel

    @property
    def num_states(self) -> int:
        return self.kernel.num_states

    @property
    def data_states(self) -> int:
        return self.kernel.data_states

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return self.noise.total(t.to(torch.float64))

    def sigma_rate(self, t: torch.Tensor) -> torch.Tensor:
        return self.noise.rate(t.to(torch.float64))

    def transition(self, t: torch.Tensor) -> torch.Tensor:
        """P(x_t = · | x_0 = ·) [B, S, S]."""
        return self.kernel.transition(self.sigma(t))

    def sample(self, x0: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None = None,
               u: torch.Tensor | None = None) -> torch.Tensor:
        """x_t ~ q(x_t | x_0) for t [B]. Pass the same uniforms u [B, L] for a coupled draw at several times."""
        if u is None:
            u = torch.rand(x0.shape, generator=generator, dtype=torch.float64)
        return self.kernel.sample(x0, self.sigma(t), u)

    def sample_pair(self, x0: torch.Tensor, t_hi: torch.Tensor, t_lo: torch.Tensor,
                    generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """A joint draw (x_{t_hi}, x_{t_lo}) of the forward process, t_hi > t_lo, in which x_{t_hi}
        depends on t_hi alone (so the KLUB computes its rates once per interval).

        x_{t_hi} ~ q(·|x_0); then x_{t_lo} from the forward bridge q(x_{t_lo} | x_0, x_{t_hi}) ∝
        P_{t_lo}[x_0, ·] P_{t_hi − t_lo}[·, x_{t_hi}]. Absorbing: one uniform u per position, masked at
        t iff u < P(mask at t); that is the same bridge, with nested masks that move smoothly with t
        under common random numbers.
        """
        u_hi = torch.rand(x0.shape, generator=generator, dtype=torch.float64)
        u_lo = torch.rand(x0.shape, generator=generator, dtype=torch.float64)
        x_hi = self.sample(x0, t_hi, u=u_hi)
        if self.kernel.mask is not None:
            return x_hi, self.sample(x0, t_lo, u=u_hi)
        s_lo = self.sigma(t_lo)
        bridge = self.kernel.transition_rows(x0, s_lo) * self.kernel.transition_cols(x_hi, self.sigma(t_hi) - s_lo)
        cdf = bridge.cumsum(-1)
        x_lo = torch.searchsorted(cdf, (u_lo * cdf[..., -1]).unsqueeze(-1)).squeeze(-1)
        return x_hi, x_lo.clamp_(max=self.num_states - 1)


def mixing_time(process: ForwardProcess, tv: float, tol: float = 1e-6) -> float:
    """t_mix = the first t at which every token has forgotten its data value up to `tv`:
    max_{x0} TV(q_t(·|x0), π) ≤ tv, with π the stationary law of the kernel.

    Past t_mix a kernel whose π spreads over the data states (uniform, Gaussian) only churns: x_t moves
    among data states at a rate dσ̄/dt that keeps growing (100-fold over tauLDR's [0, 1]), while telling
    little of x_0. The KLUB there is large and says nothing about the samples, and a search chases it
    toward t = 1; one step from 1 to t_mix serves instead. Absorbing kernels never churn (a masked token
    stays masked; π holds no data state), so for them t_mix = 1. Also 1 when not that mixed at t = 1.
    Bisection: the distance decreases in t for every kernel here."""
    if not 0.0 < tv < 1.0:
        raise ValueError(f"the mixing tolerance (jys.mix_tv) must lie in (0, 1), got {tv}")
    if process.kernel.mask is not None:
        return 1.0

    def mixed(t: float) -> bool:
        sigma = float(process.sigma(torch.tensor([t], dtype=torch.float64))[0])
        return process.kernel.max_tv_to_stationary(sigma) <= tv

    if not mixed(1.0):
        return 1.0
    lo, hi = 0.0, 1.0
    while hi - lo > tol:
        mid = (lo + hi) / 2
        lo, hi = (lo, mid) if mixed(mid) else (mid, hi)
    return hi


def make_process(cfg) -> ForwardProcess:
    """From a config with `noise: {name, ...}` and `kernel: {name, ...}` and the data vocabulary size."""
    noise_cfg = dict(cfg["noise"])
    kernel_cfg = dict(cfg["kernel"])
    noise = make_noise(noise_cfg.pop("name"), **noise_cfg)
    kernel = make_kernel(kernel_cfg.pop("name"), kernel_cfg.pop("num_states"), **kernel_cfg)
    return ForwardProcess(noise, kernel)
