"""Time grids: validation, the baseline schedules, and schedule files.

A grid is a strictly decreasing float64 tensor t_0 = 1 > … > t_N = ε in [0, 1]; N steps.
A schedule file is JSON with at least `times` (that list); `python -m jys` adds much more.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch

F64 = torch.float64


def check_grid(grid) -> torch.Tensor:
    grid = torch.as_tensor(grid, dtype=F64)
    if grid.ndim != 1 or grid.numel() < 2:
        raise ValueError(f"a time grid needs at least 2 times in a 1-D list, got shape {tuple(grid.shape)}")
    if not torch.isfinite(grid).all() or grid.min() < 0 or grid.max() > 1:
        raise ValueError(f"a time grid must lie in [0, 1], got values in [{float(grid.min())}, {float(grid.max())}]")
    steps = grid[1:] - grid[:-1]
    if (steps >= 0).any():
        i = int(torch.nonzero(steps >= 0)[0])
        raise ValueError(f"a time grid must be strictly decreasing, but t[{i}]={float(grid[i])} <= t[{i + 1}]={float(grid[i + 1])}")
    return grid


def _check_nfe_eps(nfe: int, eps: float) -> None:
    if not isinstance(nfe, int) or nfe < 1:
        raise ValueError(f"nfe must be an integer >= 1, got {nfe!r}")
    if not 0.0 < eps < 1.0:
        raise ValueError(f"eps must lie in (0, 1), got {eps}")


def uniform(nfe: int, eps: float = 1e-5) -> torch.Tensor:
    _check_nfe_eps(nfe, eps)
    return torch.linspace(1.0, eps, nfe + 1, dtype=F64)


def cosine(nfe: int, eps: float = 1e-5) -> torch.Tensor:
    """t_i = ε + (1 − ε) cos(π i / 2N): MaskGIT's cosine, small steps near t = 1 and large ones near ε."""
    _check_nfe_eps(nfe, eps)
    i = torch.arange(nfe + 1, dtype=F64)
    grid = eps + (1 - eps) * torch.cos(math.pi * i / (2 * nfe))
    grid[-1] = eps
    return grid


POWERS = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.5, 2.0, 3.0)  # the power family the oracle studies scan


def power(nfe: int, q: float, eps: float = 1e-5) -> torch.Tensor:
    """t_i = 1 − (1 − ε)(i/N)^q: q < 1 leaps early from t = 1 and crowds the steps toward ε, q = 1 is uniform."""
    _check_nfe_eps(nfe, eps)
    i = torch.arange(nfe + 1, dtype=F64)
    return 1 - (1 - eps) * (i / nfe) ** q


BASELINES = {"uniform": uniform, "cosine": cosine}


def unmasked_counts(times, process, length: int) -> list[int]:
    """k(t) = round(L·e^{−σ̄(t)}), the tokens unmasked at time t in expectation; k(1) = 0, since sampling
    starts from the prior, where every token is masked (for L ≥ 500, L·e^{−σ̄(1)} rounds to 1 or more)."""
    t = torch.as_tensor(times, dtype=F64)
    keep = torch.exp(-process.sigma(t))
    return torch.where(t >= 1.0, 0, torch.round(length * keep)).long().tolist()


def _unmasked_at_one(process) -> float:
    """e^{−σ̄(1)}: the fraction of tokens the forward process leaves unmasked at t = 1."""
    return float(torch.exp(-process.sigma(torch.tensor([1.0], dtype=F64)))[0])


def first_count(process, length: int) -> int:
    """The smallest k > 0 that some t < 1 reaches: round(L·e^{−σ̄(t)}) > L·e^{−σ̄(1)} − 1/2."""
    return max(1, math.floor(length * _unmasked_at_one(process) + 0.5))


def token_counts(grid: torch.Tensor, process, length: int) -> list[int]:
    """The unmasked-token counts k(t_i) that k-Gillespie follows; they must strictly increase."""
    counts = unmasked_counts(check_grid(grid), process, length)
    for i in range(len(counts) - 1):
        if counts[i + 1] <= counts[i]:
            raise ValueError(f"k-Gillespie needs the unmasked count to grow at every step, but t={float(grid[i])} "
                             f"and t={float(grid[i + 1])} both give {counts[i]} of {length} tokens")
    return counts


def times_from_counts(counts, process, length: int) -> torch.Tensor:
    """A time for each count, exact for unmasked_counts: k = 0 → t = 1, and for 0 < k ≤ L a t < 1 with
    round(L·e^{−σ̄(t)}) = k: e^{−σ̄(t)} = k/L where that lies above e^{−σ̄(1)}, else the middle of the
    counts' rounding window above e^{−σ̄(1)}. A count no t < 1 reaches (k < first_count) is an error."""
    k = torch.as_tensor(counts, dtype=F64)
    if ((k < 0) | (k > length) | (k != k.round())).any():
        raise ValueError(f"unmasked-token counts must be integers in [0, {length}], got {k.tolist()}")
    low = first_count(process, length)
    if ((k > 0) & (k < low)).any():
        raise ValueError(f"counts {sorted({int(c) for c in k if 0 < c < low})} are reached at no t < 1 for L={length} "
                         f"(at t = 1, L·e^(-sigma) = {low - 0.5:.4g} or more); the smallest reachable count is {low}")
    keep1 = _unmasked_at_one(process)
    keep = torch.where(k / length > keep1, k / length, (keep1 + (k + 0.5) / length) / 2)
    times = process.noise.inverse(-torch.log(keep.clamp(min=1e-300))).clamp(0.0, 1.0)
    return torch.where(k == 0, 1.0, times) + 0.0  # + 0.0 turns −0.0 into 0.0


def geometric_counts(nfe: int, length: int) -> list[int]:
    """Unmasked-token counts that grow geometrically, k_0 = 0 and k_i = round(L^{i/N}), each at least one
    above the last (and leaving one token per remaining step): DUS's dilation levels of base a = L^{1/N} when
    that is an integer (L = 256: N = 8 is base 2, N = 4 base 4), its natural extension otherwise."""
    if not isinstance(nfe, int) or not 1 <= nfe <= length:
        raise ValueError(f"the geometric count grid needs 1 <= nfe <= length ({length}), got {nfe!r}")
    counts = [0]
    for i in range(1, nfe + 1):
        counts.append(min(max(round(length ** (i / nfe)), counts[-1] + 1), length - (nfe - i)))
    return counts


def geometric(nfe: int, process, length: int) -> torch.Tensor:
    """The time grid of geometric_counts (absorbing kernels): the grid DUS reveals its levels on."""
    return check_grid(times_from_counts(geometric_counts(nfe, length), process, length))


def beta_mask_schedule(tau, a: float, b: float) -> torch.Tensor:
    """α(τ) = sin²(π/2 · I_τ(a, b)): the energy-minimizing mask schedule of Chen et al. (arXiv 2509.13866, Condition
    3.4 with γ a Beta(a, b) CDF), in their time τ ∈ [0, 1] from all masked (τ = 0) to data (τ = 1); α is the chance a
    token is unmasked. Beta(½, ½) gives α = τ (linear), Beta(1, 1) gives α = sin²(πτ/2)."""
    from scipy.special import betainc

    if not (a > 0 and b > 0):
        raise ValueError(f"the Beta schedule needs a > 0 and b > 0, got a={a}, b={b}")
    tau = torch.as_tensor(tau, dtype=F64)
    gamma = torch.from_numpy(betainc(a, b, tau.clamp(0.0, 1.0).numpy()))
    return torch.sin(math.pi / 2 * gamma) ** 2


def beta(nfe: int, a: float, b: float, process, eps: float = 1e-5) -> torch.Tensor:
    """The time grid of the Beta mask schedule for an absorbing kernel: N steps uniform in the paper's τ, each t_i the
    time where this process keeps a token unmasked with chance α(τ_i): e^{−σ̄(t_i)} = α(i/N); t_0 = 1, t_N = ε.
    Times are clamped into [ε, 1]; a grid whose steps collapse there (a, b that unmask nothing for several steps at
    this N) is an error naming them."""
    _check_nfe_eps(nfe, eps)
    if process.kernel.mask is None:
        raise ValueError("schedule=beta is a mask schedule: it needs an absorbing kernel")
    alpha = beta_mask_schedule(torch.arange(nfe + 1, dtype=F64) / nfe, a, b)
    keep1 = _unmasked_at_one(process)
    inner = process.noise.inverse(-torch.log(alpha[1:-1].clamp(min=keep1, max=1.0))).clamp(eps, 1.0)
    grid = torch.cat([torch.ones(1, dtype=F64), inner, torch.full((1,), eps, dtype=F64)])
    try:
        return check_grid(grid)
    except ValueError as err:
        raise ValueError(f"the Beta schedule (a={a}, b={b}) at nfe={nfe} gives repeated times: {err}") from None


def load_schedule(path: str | Path) -> dict:
    """Read a schedule file; returns its dict with `times` checked (NFE = len(times) − 1)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"schedule file {str(path)!r} does not exist")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"schedule file {str(path)!r} is not valid JSON: {err}") from None
    if not isinstance(data, dict) or "times" not in data:
        raise ValueError(f"schedule file {str(path)!r} needs a key 'times' (a decreasing list of floats from 1 to eps)")
    try:
        data["times"] = check_grid(data["times"]).tolist()
    except (ValueError, TypeError) as err:
        raise ValueError(f"schedule file {str(path)!r}: {err}") from None
    return data
