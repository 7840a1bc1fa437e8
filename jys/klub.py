"""The KL upper bound (KLUB) of one refinement t1 > t2 > t3.

Coarse path: one τ-leaping step t1 → t3 with the model read at (x_{t1}, t1). Fine path: the same
on [t2, t1], then the model read again at (x_{t2}, t2). The paths agree until t2; on [t3, t2] they
are Poisson processes over the marks (l, y) (set token l to y) with intensities R1 (coarse, kept
from t1) and R2 (fine), so by Girsanov

  girsanov:  KLUB(t2) = (t2 − t3) · E Σ_{l,y} [ R2 log(R2/R1) − R2 + R1 ]
  reference: KLUB(t2) = (t2 − t3) · E Σ_{l,y} R2 log(R2/R1)        (the published code)

with R1 = R̂(x_{t1}, t1), R2 = R̂(x_{t2}, t2), and the expectation over x_0 from the data and the
forward joint (x_{t1}, x_{t2}), with common random numbers across the t2 of one search.
One mark is not defined by R̂(x_{t1}, t1): jumping back to x_{t1,l} after the token changed (never for
absorbing kernels, where a changed token is unmasked and R2 is 0). For it R1 is the coarse model's
rate from x_{t2,l}: dσ̄/dt(t1) · Q[x_{t1,l}, x_{t2,l}] / r1_{l, x_{t2,l}}.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from models.protocol import concrete_ratios, rates_from_ratios

F64 = torch.float64
OBJECTIVES = ("girsanov", "reference")


@dataclass
class Coarse:
    """What one interval's search keeps fixed: x_0, the uniforms (as a seed), x_{t1} and r1."""

    x0: torch.Tensor  # [M, L]
    seed: int
    t1: float
    t3: float
    x_t1: torch.Tensor  # [M, L]
    ratio_t1: torch.Tensor  # [M, L, S] float64


def model_ratios(model, x: torch.Tensor, t: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Concrete ratios at (x, t) in batches of batch_size sequences. [N, L, S]"""
    out = []
    for i in range(0, x.shape[0], batch_size):
        xb, tb = x[i:i + batch_size], t[i:i + batch_size]
        out.append(concrete_ratios(model(xb, tb), xb, tb, model.process))
    return torch.cat(out)


def draw_pair(process, x0: torch.Tensor, seed: int, t1: float, t2: torch.Tensor):
    """(x_{t1}, x_{t2}) from the seed alone: the same uniforms for every t2 of a search."""
    g = torch.Generator().manual_seed(seed)
    M = x0.shape[0]
    return process.sample_pair(x0, torch.full((M,), t1, dtype=F64), t2, g)


def klub_terms(process, coarse_ratio: torch.Tensor, x_t1: torch.Tensor, t1: torch.Tensor, fine_ratio: torch.Tensor,
               x_t2: torch.Tensor, t2: torch.Tensor, objective: str) -> torch.Tensor:
    """Σ_{l,y} of the KLUB integrand per sample (without the duration factor). [M]"""
    R2 = rates_from_ratios(fine_ratio, x_t2, t2, process)
    R1 = rates_from_ratios(coarse_ratio, x_t1, t1, process)
    changed = x_t2 != x_t1
    if changed.any() and process.kernel.mask is None:
        back = process.sigma_rate(t1).reshape(-1, 1) * process.kernel.rate_cols(x_t2).gather(-1, x_t1.unsqueeze(-1))[..., 0]
        back = back / coarse_ratio.gather(-1, x_t2.unsqueeze(-1))[..., 0]
        R1 = R1.scatter(-1, x_t1.unsqueeze(-1), torch.where(changed, back, 0.0).unsqueeze(-1))
    bad = (R2 > 0) & ~(R1 > 0)
    if bad.any():
        raise ValueError(f"the model gives {int(bad.sum())} reverse rates that are 0 at t1={float(t1[0]):.4g} but "
                         f"positive at t2={float(t2[0]):.4g}: its ratios must be positive where the process can jump")
    pos = R2 > 0
    log_term = torch.where(pos, R2 * (torch.log(torch.where(pos, R2, 1.0)) - torch.log(torch.where(pos, R1, 1.0))), 0.0)
    if objective == "reference":
        return log_term.sum((1, 2))
    return (log_term - R2 + R1).sum((1, 2))


def check_objective(objective: str) -> None:
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown JYS objective {objective!r}; expected one of {OBJECTIVES}")
