"""First-order Markov chains over S0 tokens: the data law of every oracle experiment."""
from __future__ import annotations

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

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """log P(sequence) for x [N, L]. [N] float64"""
        lp = self.initial.log()[x[:, 0]]
        return lp + self.transition.log()[x[:, :-1], x[:, 1:]].sum(1)

    def save(self, path: str | Path) -> None:
        np.savez(path, initial=self.initial.numpy(), transition=self.transition.numpy())


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


if __name__ == "__main__":  # python -m models.chains smooth OUT.npz [num_states]: write a preset chain to a file
    import sys

    if len(sys.argv) not in (3, 4) or sys.argv[1] not in CHAIN_PRESETS:
        sys.exit(f"usage: python -m models.chains {{{','.join(CHAIN_PRESETS)}}} OUT.npz [num_states]")
    out = Path(sys.argv[2])
    out.parent.mkdir(parents=True, exist_ok=True)
    chain = CHAIN_PRESETS[sys.argv[1]](*(int(a) for a in sys.argv[3:]))
    chain.save(out)
    print(f"{sys.argv[1]} chain with {chain.num_states} states -> {out}")
