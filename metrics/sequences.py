"""Sequence metrics against a Markov chain: CountDown error, invalid transitions, likelihood."""
from __future__ import annotations

import torch

from models.chains import MarkovChain


def _check(samples: torch.Tensor) -> None:
    if samples.ndim != 2 or samples.shape[1] < 2:
        raise ValueError(f"samples must be [N, L] with L >= 2, got shape {tuple(samples.shape)}")


def countdown_error(samples: torch.Tensor) -> float:
    """Fraction of all transitions (x_i, x_{i+1}) that break the countdown: x_i > 0 and x_{i+1} ≠ x_i − 1."""
    _check(samples)
    a, b = samples[:, :-1], samples[:, 1:]
    return ((a > 0) & (b != a - 1)).double().mean().item()


def countdown_error_published(samples: torch.Tensor) -> float:
    """The published checker's number: it resets after each checked pair, so it sees only the
    pairs (x_0, x_1), (x_2, x_3), … — every other transition."""
    _check(samples)
    n = samples.shape[1] // 2 * 2
    a, b = samples[:, 0:n:2], samples[:, 1:n:2]
    return ((a > 0) & (b != a - 1)).double().mean().item()


def chain_invalid_rate(samples: torch.Tensor, chain: MarkovChain) -> float:
    """Fraction of transitions (x_i, x_{i+1}) to which the chain gives probability 0."""
    _check(samples)
    return (chain.transition[samples[:, :-1], samples[:, 1:]] == 0).double().mean().item()


def chain_nll(samples: torch.Tensor, chain: MarkovChain, floor: float) -> float:
    """Mean negative log-likelihood per token under the chain mixed with the uniform floor (finite)."""
    _check(samples)
    return (-chain.mixed(floor).log_prob(samples) / samples.shape[1]).mean().item()
