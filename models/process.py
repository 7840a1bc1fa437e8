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


def make_process(cfg) -> ForwardProcess:
    """From a config with `noise: {name, ...}` and `kernel: {name, ...}` and the data vocabulary size."""
    noise_cfg = dict(cfg["noise"])
    kernel_cfg = dict(cfg["kernel"])
    noise = make_noise(noise_cfg.pop("name"), **noise_cfg)
    kernel = make_kernel(kernel_cfg.pop("name"), kernel_cfg.pop("num_states"), **kernel_cfg)
    return ForwardProcess(noise, kernel)
