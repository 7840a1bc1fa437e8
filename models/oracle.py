"""The exact oracle: the true denoiser of a Markov-chain data law, by batched forward-backward.

Each position's x_t is an emission of x_0 through the forward kernel, E_l(s) = P_t[s, x_t,l],
so p(x_0 | x_t) is an HMM posterior. With q_l(s) = p(x_0,l = s | x_t without position l):
  denoiser  p(x_0,l = s | x_t) ∝ q_l(s) E_l(s)
  ratio     p_t(x with x_l ← y) / p_t(x) = Σ_s q_l(s) P_t[s, y] / Σ_s q_l(s) P_t[s, x_l]
All in float64. Parallel decoding makes x_t the chain forbids, so the oracle is exact for the chain
mixed with a small uniform floor, which keeps every posterior finite.
Conditional generation (`prefix` K > 0): the first K tokens of x are data, not noisy observations, so
their emissions are one-hot: the posterior of the other positions is the chain's law given the prefix.
"""
from __future__ import annotations

import torch

from models.chain_products import TransitionProducts
from models.chains import MarkovChain
from models.process import ForwardProcess
from models.protocol import KINDS, ModelOutput

F64 = torch.float64
RESET_MIN_STATES = 256


class OracleModel:
    def __init__(self, chain: MarkovChain, process: ForwardProcess, floor: float = 1e-3, output: str = "denoiser",
                 prefix: int = 0):
        if chain.num_states != process.data_states:
            raise ValueError(f"chain has {chain.num_states} states but the process expects {process.data_states} data states")
        if output not in KINDS:
            raise ValueError(f"oracle output {output!r}; expected one of {KINDS}")
        self.data_chain = chain
        self.chain = chain.mixed(floor)
        self.floor = floor
        self.process = process
        self.output = output
        self.prefix = int(prefix)
        # absorbing kernels: an unmasked token's emission is one-hot, so it resets the messages; worth its indexing
        # only where products with T dominate (crossover near 200 states on a 2-core CPU: 256 states 1.1x faster,
        # 512 1.5x; 32 states 1.4-2.4x slower)
        self.observed_resets = process.kernel.mask is not None and chain.num_states >= RESET_MIN_STATES
        self._products = None  # TransitionProducts of the mixed chain, built at the first absorbing pass

    def describe(self) -> str:
        return (f"exact oracle ({self.output}) of a {self.chain.num_states}-state Markov chain mixed with a "
                f"uniform floor {self.floor:g} (exact for that mixture)")

    def identity(self) -> dict:
        """What fixes this model's outputs: the chain's bytes, the floor, the output kind."""
        return {"name": "oracle", "chain_sha256": self.data_chain.sha256(), "floor": self.floor, "output": self.output,
                **({"prefix": self.prefix} if self.prefix else {})}

    def leave_one_out(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """q_l(s) = p(x_0,l = s | x_t,−l) and the emissions E_l(s), each [B, L, S0]."""
        self.process.kernel.check_states(x)
        B, L = x.shape
        S0 = self.chain.num_states
        emis = self.process.kernel.transition_cols(x, self.process.sigma(t))[..., :S0]  # [B, L, S0]
        if self.prefix:  # the prefix is data: x_0,l = x_l there
            if (x[:, : self.prefix] >= S0).any():
                raise ValueError(f"oracle: the condition prefix (first {self.prefix} tokens) holds non-data states")
            emis[:, : self.prefix] = torch.nn.functional.one_hot(x[:, : self.prefix], S0).to(F64)
        if self.observed_resets:
            return self._absorbing_leave_one_out(x, emis), emis
        e = emis.transpose(0, 1).contiguous()  # [L, B, S0]: one contiguous slice per position
        T = self.chain.transition
        pred = torch.empty(L, B, S0, dtype=F64)  # p(x_0,l | x_t,<l)
        pred[0] = self.chain.initial
        for l in range(L - 1):
            alpha = pred[l] * e[l]
            pred[l + 1] = (alpha / alpha.sum(-1, keepdim=True)) @ T
        back = torch.empty(L, B, S0, dtype=F64)  # ∝ p(x_t,>l | x_0,l)
        back[L - 1] = 1.0
        for l in range(L - 2, -1, -1):
            beta = (e[l + 1] * back[l + 1]) @ T.T
            back[l] = beta / beta.sum(-1, keepdim=True)
        # A zero normalizer anywhere leaves NaN or zeros that reach every position: checked once here.
        return _normalize((pred * back).transpose(0, 1), "forward-backward"), emis

    def _absorbing_leave_one_out(self, x: torch.Tensor, emis: torch.Tensor) -> torch.Tensor:
        """The same forward-backward under an absorbing kernel, where a token's emission is one-hot (unmasked, or
        prefix) or constant (masked): an observed token resets the message to a row (forward) or column (backward)
        of T, and only masked tokens need a product with T, so the cost follows the masked tokens (S0 = 4096 for
        the text twin: L products of [B, S0] × [S0, S0] per call otherwise); those products take T as sparse counts
        plus rank-one parts (models/chain_products.py: a call on the text twin 4x faster). Equal to the general pass up
        to rounding (tested)."""
        B, L = x.shape
        T = self.chain.transition
        if self._products is None:
            self._products = TransitionProducts(T)
        products = self._products
        observed = x != self.process.kernel.mask  # [B, L]; the prefix is data, so observed
        xd = x.clamp(max=T.shape[0] - 1)
        pred = torch.empty(L, B, T.shape[0], dtype=F64)  # p(x_0,l | x_t,<l)
        pred[0] = self.chain.initial
        for l in range(L - 1):
            obs = observed[:, l]
            pred[l + 1][obs] = T[xd[obs, l]]
            hidden = ~obs
            if hidden.any():  # a constant emission leaves the message as it is, then one step of the chain
                pred[l + 1][hidden] = products.right(pred[l][hidden])
        back = torch.empty(L, B, T.shape[0], dtype=F64)  # ∝ p(x_t,>l | x_0,l)
        back[L - 1] = 1.0
        Tt = products.dense_t
        for l in range(L - 2, -1, -1):
            obs = observed[:, l + 1]
            beta = torch.empty(B, T.shape[0], dtype=F64)
            beta[obs] = Tt[xd[obs, l + 1]]
            hidden = ~obs
            if hidden.any():
                beta[hidden] = products.left(back[l + 1][hidden])
            back[l] = beta / beta.sum(-1, keepdim=True)
        q = _normalize((pred * back).transpose(0, 1), "forward-backward")
        if not (q.gather(-1, xd.unsqueeze(-1)).squeeze(-1)[observed] > 0).all():  # the general pass's zero normalizer
            raise ValueError("oracle forward-backward pass: x_t has zero probability under the chain; "
                             "use a uniform floor > 0 (oracle.floor)")
        return q

    def posterior(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """p(x_0,l | x_t) [B, L, S0]."""
        q, emis = self.leave_one_out(x, t)
        return _normalize(q * emis, "posterior")

    def ratios(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Exact concrete scores p_t(x_l ← y) / p_t(x) [B, L, S]."""
        q, emis = self.leave_one_out(x, t)
        P = self.process.transition(t)[:, : self.chain.num_states]  # [B, S0, S]
        marg = torch.einsum("bls,bsy->bly", q, P)  # p(x_t,l = y | x_t,−l)
        return marg / marg.gather(-1, x.unsqueeze(-1))

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> ModelOutput:
        if self.output == "denoiser":
            return ModelOutput("denoiser", self.posterior(x, t))
        return ModelOutput("score", self.ratios(x, t).log())


def _normalize(p: torch.Tensor, what: str) -> torch.Tensor:
    z = p.sum(-1, keepdim=True)
    if not (z > 0).all() or not torch.isfinite(z).all():
        raise ValueError(f"oracle {what} pass: x_t has zero probability under the chain; "
                         "use a uniform floor > 0 (oracle.floor)")
    return p / z
