"""Noise schedules: the total noise σ̄(t) and its rate dσ̄/dt for t in [0, 1].

The forward CTMC has rate matrix Q_t = dσ̄/dt · Q, so P(x_t | x_0) = expm(σ̄(t) Q).
Each schedule also inverts σ̄, which the first-hitting sampler needs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


class NoiseSchedule:
    """σ̄(t) (total noise) and dσ̄/dt (rate); both accept tensors of times."""

    def total(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def rate(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def inverse(self, sigma: torch.Tensor) -> torch.Tensor:
        """The time t with σ̄(t) = sigma (every schedule here is increasing)."""
        raise NotImplementedError


@dataclass(frozen=True)
class LogLinear(NoiseSchedule):
    """σ̄(t) = −log(1 − (1−ε)t): the absorbing mask probability is (1−ε)t (SEDD, JYS)."""

    eps: float = 1e-3

    def total(self, t):
        return -torch.log1p(-(1 - self.eps) * t)

    def rate(self, t):
        return (1 - self.eps) / (1 - (1 - self.eps) * t)

    def inverse(self, sigma):
        return -torch.expm1(-sigma) / (1 - self.eps)


@dataclass(frozen=True)
class Geometric(NoiseSchedule):
    """σ̄(t) = σmin^{1−t} σmax^t (SEDD's geometric noise)."""

    sigma_min: float = 1e-4
    sigma_max: float = 20.0

    def total(self, t):
        return self.sigma_min ** (1 - t) * self.sigma_max**t

    def rate(self, t):
        return self.total(t) * math.log(self.sigma_max / self.sigma_min)

    def inverse(self, sigma):
        return torch.log(sigma / self.sigma_min) / math.log(self.sigma_max / self.sigma_min)


@dataclass(frozen=True)
class Exponential(NoiseSchedule):
    """tauLDR: β(t) = time_base·ln(time_exponential)·time_exponential^t, σ̄ = ∫β."""

    time_base: float = 3.0
    time_exponential: float = 100.0

    def total(self, t):
        return self.time_base * (self.time_exponential**t - 1)

    def rate(self, t):
        return self.time_base * math.log(self.time_exponential) * self.time_exponential**t

    def inverse(self, sigma):
        return torch.log1p(sigma / self.time_base) / math.log(self.time_exponential)


@dataclass(frozen=True)
class Constant(NoiseSchedule):
    """σ̄(t) = rate·t (tauLDR's uniform-rate piano model, with its rate folded in)."""

    value: float = 1.0

    def total(self, t):
        return self.value * t

    def rate(self, t):
        return torch.full_like(t, self.value)

    def inverse(self, sigma):
        return sigma / self.value


NOISE_SCHEDULES = {"loglinear": LogLinear, "geometric": Geometric, "exponential": Exponential, "constant": Constant}


def make_noise(name: str, **params) -> NoiseSchedule:
    if name not in NOISE_SCHEDULES:
        raise ValueError(f"unknown noise schedule {name!r}; expected one of {sorted(NOISE_SCHEDULES)}")
    return NOISE_SCHEDULES[name](**params)
