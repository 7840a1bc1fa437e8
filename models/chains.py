"""First-order Markov chains over S0 tokens: the data law of every oracle experiment."""
from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

F64 = torch.float64


@dataclass
class MarkovChain:
    initial: torch.Tensor  # [S0] float64
    transition: torch.Tensor  # [S0, S0] float64, rows sum to 1

    def __post_init__(self):
        self.initial = torch.as_tensor(self.initial, dtype=F64)
        self.transition = torch.as_tensor(self.transition, dtype=F64)
        S = self.initial.shape[0] if self.initial.ndim == 1 else -1
        if self.initial.ndim != 1 or self.transition.shape != (S, S):
            raise ValueError(f"chain needs initial [S] and transition [S, S], got {tuple(self.initial.shape)} "
                             f"and {tuple(self.transition.shape)}")
        for name, probs in (("initial", self.initial), ("transition rows", self.transition)):
            if not torch.isfinite(probs).all() or (probs < 0).any():
                raise ValueError(f"chain {name} must be finite and non-negative")
            sums = probs.sum(-1)
            if not torch.allclose(sums, torch.ones_like(sums), atol=1e-6):
                raise ValueError(f"chain {name} must sum to 1, got sums in [{float(sums.min()):.6g}, {float(sums.max()):.6g}]")

    @property
    def num_states(self) -> int:
        return self.initial.shape[0]

    def sha256(self) -> str:
        """The chain's identity in cache keys and model identities: the hash of its float64 arrays' bytes."""
        return hashlib.sha256(self.initial.numpy().tobytes() + self.transition.numpy().tobytes()).hexdigest()

    def mixed(self, floor: float) -> "MarkovChain":
        """(1 − floor)·chain + floor·uniform: every sequence gets positive probability."""
        if not 0.0 <= floor < 1.0:
            raise ValueError(f"uniform floor must lie in [0, 1), got {floor}")
        u = 1.0 / self.num_states
        return MarkovChain((1 - floor) * self.initial + floor * u, (1 - floor) * self.transition + floor * u)

    def sample(self, num: int, length: int, generator: torch.Generator) -> torch.Tensor:
        """num sequences of the given length [num, length] long."""
        if num < 1 or length < 1:
            raise ValueError(f"need num >= 1 and length >= 1, got num={num}, length={length}")
        cdf0 = self.initial.cumsum(0)
        cdf = self.transition.cumsum(1)
        u = torch.rand(num, length, generator=generator, dtype=F64)
        x = torch.empty(num, length, dtype=torch.long)
        x[:, 0] = torch.searchsorted(cdf0, u[:, 0] * cdf0[-1]).clamp_(max=self.num_states - 1)
        for l in range(1, length):
            rows = cdf[x[:, l - 1]]
            x[:, l] = torch.searchsorted(rows, (u[:, l] * rows[:, -1]).unsqueeze(1)).squeeze(1).clamp_(max=self.num_states - 1)
        return x

    def sample_continuations(self, prefix: torch.Tensor, length: int, generator: torch.Generator) -> torch.Tensor:
        """Continue each row of `prefix` [N, K] to `length` tokens by the chain: x_K ~ T[x_{K-1}], ... (x_0 ~ initial
        when K = 0, where it is the same draw as sample(N, length) for the same generator state). [N, length] long

        The same inverse-CDF draw as sample(), searched in two levels (blocks of B ≈ √S columns, then within the
        block): the first index with cdf ≥ v either way, but reading N·(S/B + B) numbers per step, not N·S."""
        if prefix.ndim != 2:
            raise ValueError(f"prefix must be [N, K], got shape {tuple(prefix.shape)}")
        N, K = prefix.shape
        S = self.num_states
        if N < 1 or length < max(K, 1):
            raise ValueError(f"need N >= 1 prefixes and length >= max(K, 1); got N={N}, K={K}, length={length}")
        if K and (int(prefix.min()) < 0 or int(prefix.max()) >= S):
            raise ValueError(f"prefix holds tokens in [{int(prefix.min())}, {int(prefix.max())}], expected [0, {S})")
        u = torch.rand(N, length - K, generator=generator, dtype=F64)
        x = torch.empty(N, length, dtype=torch.long)
        x[:, :K] = prefix
        if K == 0:
            cdf0 = self.initial.cumsum(0)
            x[:, 0] = torch.searchsorted(cdf0, u[:, 0] * cdf0[-1]).clamp_(max=S - 1)
        cdf = self.transition.cumsum(1)  # [S, S], non-decreasing rows
        total = cdf[:, -1].clone()  # [S]
        B = max(1, math.isqrt(S - 1) + 1)  # ⌈√S⌉
        nb = -(-S // B)
        # +inf padding is never the first entry >= v unless no real entry is; the clamp maps that to S − 1, as sample()
        padded = torch.cat([cdf, torch.full((S, nb * B - S), math.inf, dtype=F64)], 1).view(S, nb, B)  # [S, nb, B]
        last = padded[:, :, -1].contiguous()  # [S, nb]: each block's largest entry
        for l in range(max(K, 1), length):
            a = x[:, l - 1]
            v = (u[:, l - K] * total[a]).unsqueeze(1)  # [N, 1]
            j = torch.searchsorted(last[a], v).clamp_(max=nb - 1)  # [N, 1]: the first block reaching v
            within = torch.searchsorted(padded[a, j.squeeze(1)], v)  # [N, 1]
            x[:, l] = (j * B + within).squeeze(1).clamp_(max=S - 1)
        return x

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log P(sequence) for x [N, L]. [N] float64"""
        lp = self.initial.log()[x[:, 0]]
        return lp + self.transition.log()[x[:, :-1], x[:, 1:]].sum(1)

    def save(self, path: str | Path) -> None:
        np.savez(path, initial=self.initial.numpy(), transition=self.transition.numpy())


def fit_chain(sequences: torch.Tensor | np.ndarray, num_states: int, smoothing: float = 0.5,
              chunk: int = 1 << 24) -> MarkovChain:
    """The first-order chain of integer sequences [N, L] by counting, with additive (Laplace) smoothing
    `smoothing` (default 0.5, Jeffreys/Krichevsky–Trofimov) among the used states U (tokens that occur anywhere):

      initial[s]   = (#{rows starting with s} + α·[s ∈ U]) / (N + α|U|)
      T[a, b]      = (#{(x_l, x_{l+1}) = (a, b) within a row} + α·[b ∈ U]) / (#{x_l = a, l < L−1} + α|U|)

    States outside U get probability 0 in `initial` and in every row (only the oracle's uniform floor,
    `mixed`, reaches them). A state never seen as a source (outside U, or only ever a row's last token) has
    no row of its own: it gets the smoothed unigram law of U, (#{x_l = b} + α·[b ∈ U]) / (N·L + α|U|).
    With α = 0 the result is the exact frequencies. Rows are counted `chunk` tokens at a time, so a view
    of overlapping windows (text) is never copied whole."""
    x = torch.as_tensor(sequences)
    if x.ndim != 2:
        raise ValueError(f"sequences must be [N, L], got shape {tuple(x.shape)}")
    if x.dtype.is_floating_point or x.dtype.is_complex or x.dtype == torch.bool:
        raise ValueError(f"sequences must hold integer tokens, got dtype {x.dtype}")
    N, L = x.shape
    if N < 1 or L < 2:
        raise ValueError(f"need at least 1 sequence of at least 2 tokens to count transitions, got shape {(N, L)}")
    if isinstance(num_states, bool) or int(num_states) != num_states or num_states < 1:
        raise ValueError(f"num_states must be a positive integer, got {num_states!r}")
    S = int(num_states)
    alpha = float(smoothing)
    if not np.isfinite(alpha) or alpha < 0:
        raise ValueError(f"smoothing must be a finite number >= 0, got {smoothing!r}")
    lo, hi = int(x.min()), int(x.max())
    if lo < 0 or hi >= S:
        raise ValueError(f"sequences hold tokens in [{lo}, {hi}], expected [0, {S}) (num_states={S})")
    first = torch.bincount(x[:, 0].long(), minlength=S)  # [S]
    unigram = torch.zeros(S, dtype=torch.long)  # [S]
    pairs = torch.zeros(S * S, dtype=torch.long)  # [S·S], index a·S + b
    step = max(1, chunk // L)
    for i in range(0, N, step):
        rows = x[i:i + step].long()  # [n, L], a copy of this chunk only
        unigram += torch.bincount(rows.reshape(-1), minlength=S)
        pairs += torch.bincount((rows[:, :-1] * S + rows[:, 1:]).reshape(-1), minlength=S * S)
    pairs = pairs.view(S, S)
    used = (unigram > 0).to(F64)  # [S]

    def smoothed(counts: torch.Tensor) -> torch.Tensor:  # [..., S] counts -> laws over U
        c = counts.to(F64) + alpha * used
        return c / c.sum(-1, keepdim=True)

    initial, uni = smoothed(first), smoothed(unigram)
    # Every used state's smoothed row is a law over U (α > 0 or counts > 0); non-sources take the unigram.
    source = pairs.sum(1) > 0  # [S]
    # (With α = 0 a non-source row of smoothed(pairs) is 0/0; where() never reads it.)
    transition = torch.where(source[:, None], smoothed(pairs), uni[None, :])
    return MarkovChain(initial, transition)


def countdown_chain(num_states: int = 32) -> MarkovChain:
    """CountDown: a > 0 → a − 1; 0 → a fresh start uniform over 0..S−1; x_1 uniform."""
    T = torch.zeros(num_states, num_states, dtype=F64)
    T[torch.arange(1, num_states), torch.arange(num_states - 1)] = 1.0
    T[0] = 1.0 / num_states
    return MarkovChain(torch.full((num_states,), 1.0 / num_states, dtype=F64), T)


def load_chain(path: str | Path) -> MarkovChain:
    """A chain from a .npz with arrays `initial` [S] and `transition` [S, S]."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"chain file {str(path)!r} does not exist")
    with np.load(path) as f:
        missing = {"initial", "transition"} - set(f.files)
        if missing:
            raise ValueError(f"chain file {str(path)!r} lacks arrays {sorted(missing)}; it has {sorted(f.files)}")
        try:
            return MarkovChain(torch.from_numpy(f["initial"].astype(np.float64)),
                               torch.from_numpy(f["transition"].astype(np.float64)))
        except ValueError as err:
            raise ValueError(f"chain file {str(path)!r}: {err}") from None


def smooth_chain(num_states: int = 17, persistence: float = 0.8, spread: float = 1.5) -> MarkovChain:
    """A smooth ordinal chain: x' ≈ N(ρ x + (1 − ρ) c, spread²) discretized, c the middle state; x_1
    from its stationary law. Neighbouring tokens are close in value, as neighbouring pixels are."""
    if num_states < 2 or not 0.0 <= persistence < 1.0 or spread <= 0:
        raise ValueError(f"smooth chain needs num_states >= 2, persistence in [0, 1), spread > 0; got "
                         f"{num_states}, {persistence}, {spread}")
    s = torch.arange(num_states, dtype=F64)
    centre = persistence * s + (1 - persistence) * (num_states - 1) / 2  # [S]
    T = torch.softmax(-((s[None, :] - centre[:, None]) ** 2) / (2 * spread**2), dim=1)
    evals, evecs = torch.linalg.eig(T.T)
    pi = evecs[:, evals.real.argmax()].real
    return MarkovChain(pi / pi.sum(), T)


CHAIN_PRESETS = {"countdown": countdown_chain, "smooth": smooth_chain}


def nll_per_token(chain: MarkovChain, x: torch.Tensor, chunk: int = 1 << 24) -> float:
    """−Σ log P(x) / (N·L) over sequences [N, L], `chunk` tokens at a time (inf if a sequence has probability 0)."""
    log_init, log_T = chain.initial.log(), chain.transition.log()
    N, L = x.shape
    total = 0.0
    step = max(1, chunk // L)
    for i in range(0, N, step):
        rows = x[i:i + step]  # [n, L]
        total -= float(log_init[rows[:, 0]].sum() + log_T[rows[:, :-1], rows[:, 1:]].sum())
    return total / (N * L)


USAGE = (f"usage: python -m models.chains {{{','.join(CHAIN_PRESETS)}}} OUT.npz [num_states]   (a preset chain; "
         "python -m pipeline.fit_chain fits one to an experiment's training split)")


def _main(argv: list[str]) -> None:
    import sys

    if len(argv) not in (2, 3) or argv[0] not in CHAIN_PRESETS:
        sys.exit(USAGE)
    out = Path(argv[1])
    out.parent.mkdir(parents=True, exist_ok=True)
    chain = CHAIN_PRESETS[argv[0]](*(int(a) for a in argv[2:]))
    chain.save(out)
    print(f"{argv[0]} chain with {chain.num_states} states -> {out}")


if __name__ == "__main__":  # python -m models.chains smooth OUT.npz [num_states]
    import sys

    _main(sys.argv[1:])
