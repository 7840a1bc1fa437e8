"""Sequence metrics against a Markov chain: CountDown error, invalid transitions, likelihood, and the
divergences of the samples' pooled unigram and bigram frequencies and token entropy from the chain's."""
from __future__ import annotations

import torch

from metrics.text import token_entropy
from models.chains import MarkovChain


def _check(samples: torch.Tensor) -> None:
    if samples.ndim != 2 or samples.shape[1] < 2:
        raise ValueError(f"samples must be [N, L] with L >= 2, got shape {tuple(samples.shape)}")


def countdown_error(samples: torch.Tensor) -> float:
    """Fraction of all transitions (x_i, x_{i+1}) that break the countdown: x_i > 0 and x_{i+1} ≠ x_i − 1."""
    _check(samples)
    a, b = samples[:, :-1], samples[:, 1:]
    return ((a > 0) & (b != a - 1)).double().mean().item()


def countdown_error_se(samples: torch.Tensor) -> float:
    """The standard error of countdown_error over sequences: the spread of each sequence's share of broken
    transitions over √N (all sequences have L − 1 transitions, so countdown_error is their mean)."""
    _check(samples)
    a, b = samples[:, :-1], samples[:, 1:]
    per_sequence = ((a > 0) & (b != a - 1)).double().mean(1)
    n = per_sequence.numel()
    return (per_sequence.std(correction=1) / n ** 0.5).item() if n > 1 else float("nan")


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


# ---------------------------------------------------------------------- divergences of samples from a chain
# Each scores the generated positions l = K..L−1 of samples [N, L] whose first K tokens are a condition
# prefix (K = 0: none), against the chain's exact law given each sample's own prefix.

def _check_prefix(samples: torch.Tensor, chain: MarkovChain, prefix: int) -> None:
    _check(samples)
    if not 0 <= prefix < samples.shape[1]:
        raise ValueError(f"condition prefix {prefix} must lie in [0, {samples.shape[1]}) (the samples' length)")
    S = chain.num_states
    if int(samples.min()) < 0 or int(samples.max()) >= S:
        raise ValueError(f"samples hold tokens in [{int(samples.min())}, {int(samples.max())}], but the chain has "
                         f"{S} states")


def chain_marginals(chain: MarkovChain, length: int, prefix: torch.Tensor | None = None) -> torch.Tensor:
    """The law of x_l for l = 0..length−1 [length, S] float64, averaged over the rows of `prefix` [N, K]:
    for l < K the empirical law of the prefixes' tokens, then m_l = m_{l−1} T (by linearity, propagating the
    mean of the one-hots of x[i, K−1] is the mean of each sample's conditional law). Without a prefix
    (None or K = 0): initial · T^l."""
    S = chain.num_states
    K = 0 if prefix is None else prefix.shape[1]
    if not 0 <= K <= length:
        raise ValueError(f"prefix of {K} tokens is longer than length {length}")
    m = torch.empty(length, S, dtype=torch.float64)  # [L, S]
    for l in range(K):
        m[l] = torch.bincount(prefix[:, l], minlength=S).double() / prefix.shape[0]
    if K == 0:
        m[0] = chain.initial
    T = chain.transition
    for l in range(max(K, 1), length):
        m[l] = m[l - 1] @ T
    return m


def _first_pair(prefix: int) -> int:
    """The first bigram position scored: (x_{K−1}, x_K) with a prefix, whose second token is generated."""
    return max(prefix - 1, 0)


def unigram_tv(samples: torch.Tensor, chain: MarkovChain, prefix: int = 0) -> float:
    """½ Σ_s |f̂(s) − f(s)|: f̂ the samples' token frequencies pooled over the generated positions
    l = K..L−1, f the chain's exact ones, the mean over those positions of the law of x_l given each
    sample's prefix (chain_marginals)."""
    _check_prefix(samples, chain, prefix)
    L, S = samples.shape[1], chain.num_states
    gen = samples[:, prefix:]
    f_hat = torch.bincount(gen.reshape(-1), minlength=S).double() / gen.numel()  # [S]
    f = chain_marginals(chain, L, samples[:, :prefix])[prefix:].mean(0)  # [S]
    return 0.5 * float((f_hat - f).abs().sum())


def bigram_tv(samples: torch.Tensor, chain: MarkovChain, prefix: int = 0) -> float:
    """½ Σ_{a,b} |f̂(a, b) − f(a, b)| over pooled bigrams (x_l, x_{l+1}) whose second token is generated:
    l = K−1..L−2 with a prefix (the pair that joins the prefix to the first generated token is scored: it
    is where a conditional sampler must follow the prefix), l = 0..L−2 without. f(a, b) = m̄(a) T[a, b],
    m̄ the mean over those l of the law of x_l (chain_marginals; for l = K−1 the prefixes' own tokens).
    Sparse: the exact mass of pairs the samples never show enters as 1 − Σ_{seen} f."""
    _check_prefix(samples, chain, prefix)
    L, S = samples.shape[1], chain.num_states
    first = _first_pair(prefix)
    a, b = samples[:, first:-1].reshape(-1), samples[:, first + 1:].reshape(-1)
    codes, counts = torch.unique(a * S + b, return_counts=True)  # the pairs seen, [P]
    f_hat = counts.double() / a.numel()
    m_bar = chain_marginals(chain, L, samples[:, :prefix])[first:L - 1].mean(0)  # [S]
    f_seen = m_bar[codes // S] * chain.transition[codes // S, codes % S]  # [P]
    unseen = max(0.0, 1.0 - float(f_seen.sum()))  # rounding can leave −1e-16
    return 0.5 * (float((f_hat - f_seen).abs().sum()) + unseen)


def chain_reference(samples: torch.Tensor, chain: MarkovChain, prefix: int, generator: torch.Generator,
                    num: int = 4096) -> torch.Tensor:
    """Sequences of the chain with the samples' length [R, L], R = N·⌈num / N⌉ (at least `num`): row r
    continues the prefix of sample r mod N (so each prefix weighs the same, and rows 0..N−1 pair with the
    samples row by row); without a prefix, R independent draws."""
    _check_prefix(samples, chain, prefix)
    N, L = samples.shape
    R = N * -(-num // N)
    # (K = 0: the same draw as chain.sample(R, L), with T's rows gathered a chunk at a time for large S)
    return chain.sample_continuations(samples[torch.arange(R) % N, :prefix], L, generator)


def token_entropy_gap(samples: torch.Tensor, reference: torch.Tensor, prefix: int = 0) -> float:
    """Mean over samples of the entropy (nats) of the token histogram of the generated part l = K..L−1,
    minus the same mean over reference sequences of the chain (chain_reference): < 0 when the samples
    repeat tokens more than the chain does (a coarse grid's collapse), ≈ 0 for samples of the chain."""
    if samples.shape[1] != reference.shape[1]:
        raise ValueError(f"samples {tuple(samples.shape)} and reference {tuple(reference.shape)} differ in length")
    return token_entropy(samples[:, prefix:]) - token_entropy(reference[:, prefix:])
