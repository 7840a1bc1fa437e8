"""Note-histogram Hellinger distances of the music experiment (tauLDR, JYS Fig. 8 left).

Per sequence, p and q are the histograms of the states (MIDI pitches 0-127 and rest 128) over the
generated positions (after the condition prefix), and H = ‖√p − √q‖₂ / √2 ∈ [0, 1]: 0 for equal
histograms, 1 for disjoint ones. The experiment averages H over sequences (held-out tunes) and
reports the standard error of that mean.
"""
from __future__ import annotations

import math

import torch


def histograms(x: torch.Tensor, num_states: int) -> torch.Tensor:
    """Each row's state frequencies. x [N, T] int -> [N, S] float64 (rows sum to 1)."""
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"histograms need [N, T] tokens with T > 0, got shape {tuple(x.shape)}")
    if x.min() < 0 or x.max() >= num_states:
        raise ValueError(f"tokens in [{int(x.min())}, {int(x.max())}], expected [0, {num_states})")
    counts = torch.zeros(x.shape[0], num_states, dtype=torch.float64)
    counts.scatter_add_(1, x.long(), torch.ones(x.shape, dtype=torch.float64))
    return counts / x.shape[1]


def hellinger(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """Row-wise H(p, q) = ‖√p − √q‖₂ / √2 of probability vectors [N, S] -> [N]."""
    return torch.linalg.vector_norm(p.sqrt() - q.sqrt(), dim=-1) / math.sqrt(2.0)


def mean_and_se(values: torch.Tensor) -> tuple[float, float]:
    """The mean and its standard error (sample standard deviation / √n; 0 for a single value)."""
    n = values.numel()
    sd = float(values.std(unbiased=True)) if n > 1 else 0.0
    return float(values.mean()), sd / math.sqrt(n)


def hellinger_to(samples: torch.Tensor, reference: torch.Tensor, prefix: int, num_states: int) -> torch.Tensor:
    """H between each sample's generated part and the same row of `reference` [N, L] (another
    sampler's continuation of the same prefix, or the true continuation). [N]"""
    if samples.shape != reference.shape:
        raise ValueError(f"samples {tuple(samples.shape)} and reference {tuple(reference.shape)} differ in shape")
    if not 0 <= prefix < samples.shape[1]:
        raise ValueError(f"prefix {prefix} must lie in [0, {samples.shape[1]})")
    if prefix and not torch.equal(samples[:, :prefix], reference[:, :prefix]):
        bad = int((samples[:, :prefix] != reference[:, :prefix]).any(1).nonzero()[0])
        raise ValueError(f"row {bad}: the sample and its reference start from different prefixes; "
                         f"they must continue the same {prefix} tokens")
    return hellinger(histograms(samples[:, prefix:], num_states), histograms(reference[:, prefix:], num_states))


def other_tune_hellinger(data: torch.Tensor, prefix: int, num_states: int, generator: torch.Generator) -> torch.Tensor:
    """H between each sequence's continuation and that of another sequence drawn at random (never
    itself): how far apart two different tunes are, the scale against which the others read. [N]"""
    N = data.shape[0]
    if N < 2:
        raise ValueError("need at least 2 sequences to compare each with another")
    other = (torch.arange(N) + torch.randint(1, N, (N,), generator=generator)) % N
    h = histograms(data[:, prefix:], num_states)
    return hellinger(h, h[other])
