"""Kernels on S states: the base rate matrix Q of the forward CTMC, P(σ) = expm(σQ).

Convention: Q[x, y] is the rate from x to y (rows sum to 0); P(σ)[x0, x] = q(x_t = x | x_0 = x0).
Absorbing and uniform kernels use closed forms (no S×S matrix, so a 50k vocabulary works);
the Gaussian-target ordinal kernel of tauLDR is diagonalized once in float64.

Every method works on a batch: x [B, L] long, σ [B] float, results [B, L, S] float64.
"""
from __future__ import annotations

import numpy as np
import torch

F64 = torch.float64


class Kernel:
    num_states: int  # S: states of x_t
    data_states: int  # S0: states of x_0 (S − 1 for absorbing: data is never MASK)
    mask: int | None = None
    ordinal: bool = False

    def rate_matrix(self) -> torch.Tensor:
        """Q [S, S] float64."""
        raise NotImplementedError

    def transition(self, sigma: torch.Tensor) -> torch.Tensor:
        """P(σ) [B, S, S] float64."""
        raise NotImplementedError

    def transition_rows(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """P(σ)[x_l, :] — where x_l can go. [B, L, S]"""
        return _gather_rows(self.transition(sigma), x)

    def transition_cols(self, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """P(σ)[:, x_l] — where x_l can come from. [B, L, S]"""
        return _gather_rows(self.transition(sigma).transpose(1, 2), x)

    def rate_cols(self, x: torch.Tensor) -> torch.Tensor:
        """Q[:, x_l] — the forward rate into x_l from each y. [B, L, S]"""
        return self.rate_matrix().T[x]

    def movable(self, x: torch.Tensor) -> torch.Tensor:
        """Positions whose reverse rates can be nonzero (the others keep their token). [B, L] bool"""
        return torch.ones_like(x, dtype=torch.bool)

    def sample(self, x: torch.Tensor, sigma: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
        """Draw x' ~ P(σ)[x, :] by inverse CDF of the uniforms u [B, L].

        The same u at two noise levels gives a coupled pair (nested masks for absorbing).
        """
        rows = self.transition_rows(x, sigma)
        cdf = rows.cumsum(-1)
        cdf = cdf / cdf[..., -1:]
        out = torch.searchsorted(cdf, u.to(F64).unsqueeze(-1)).squeeze(-1)
        return out.clamp_(max=self.num_states - 1)

    def ratio_from_denoiser(self, probs: torch.Tensor, x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        """Concrete score r_y = Σ_{x0} p(x0|x) P[x0, y] / P[x0, x_l] from denoiser probs [B, L, S0].

        Exact when p is the true posterior and every x0 can reach x_l. Where some cannot (an unmasked
        absorbing token), r_y is exact only for the y that rates and Tweedie read: Q[y, x_l] ≠ 0 or y = x_l.
        """
        sigma = sigma.to(F64).reshape(-1)
        if (sigma == sigma[0]).all():  # one time for the batch (samplers, the KLUB): one [S0, S] matrix
            P = self.transition(sigma[:1])[0, : self.data_states]  # [S0, S]
            into_x = P.T[x]  # [B, L, S0] = P[x0, x_l]
        else:
            P = self.transition(sigma)[:, : self.data_states]  # [B, S0, S]
            into_x = _gather_rows(P.transpose(1, 2), x)
        w = torch.where(into_x > 0, probs.to(F64) / into_x.clamp_min(1e-300), torch.zeros((), dtype=F64))
        return w @ P

    def prior_probs(self) -> torch.Tensor:
        """The law sampling starts from at t = 1 (the limit of the forward process). [S]"""
        return torch.full((self.num_states,), 1.0 / self.num_states, dtype=F64)

    def stationary(self) -> torch.Tensor:
        """The law P(σ)[x0, ·] tends to as σ → ∞. [S]"""
        return self.transition(torch.tensor([1e6], dtype=F64))[0, 0]

    def max_tv_to_stationary(self, sigma: float) -> float:
        """max over data states x0 of TV(P(σ)[x0, ·], stationary law)."""
        P = self.transition(torch.tensor([float(sigma)], dtype=F64))[0, : self.data_states]
        return float(0.5 * (P - self.stationary()).abs().sum(-1).max())

    def staggered(self, ratio: torch.Tensor, dsigma: torch.Tensor) -> torch.Tensor:
        """expm(−Δσ Q)ᵀ r: the Tweedie (SEDD 'analytic') numerator. [B, L, S]"""
        raise ValueError(f"the Tweedie step needs an absorbing or uniform kernel, not {type(self).__name__}")

    def check_states(self, x: torch.Tensor, name: str = "x") -> None:
        if x.dtype not in (torch.int64, torch.int32) or x.ndim != 2:
            raise ValueError(f"{name} must be an integer tensor [B, L], got {x.dtype} of shape {tuple(x.shape)}")
        if x.numel() and (x.min() < 0 or x.max() >= self.num_states):
            raise ValueError(f"{name} holds states outside [0, {self.num_states}): min {int(x.min())}, max {int(x.max())}")


def _gather_rows(M: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """M [B, S, S'] and x [B, L] -> M[b, x[b, l], :] as [B, L, S']."""
    return M[torch.arange(x.shape[0]).unsqueeze(1), x]


def _col(sigma: torch.Tensor) -> torch.Tensor:
    return sigma.to(F64).reshape(-1, 1, 1)


class Absorbing(Kernel):
    """N data states plus MASK = N. Q[x, MASK] = 1, Q[x, x] = −1; a token is masked w.p. 1 − e^{−σ}."""

    def __init__(self, data_states: int):
        if data_states < 1:
            raise ValueError(f"absorbing kernel needs at least 1 data state, got {data_states}")
        self.data_states = data_states
        self.num_states = data_states + 1
        self.mask = data_states

    def prior_probs(self):
        return torch.nn.functional.one_hot(torch.tensor(self.mask), self.num_states).to(F64)

    stationary = prior_probs

    def max_tv_to_stationary(self, sigma):
        return float(torch.exp(-torch.tensor(float(sigma), dtype=F64)))  # P(x0 not yet masked)

    def rate_matrix(self):
        S = self.num_states
        Q = torch.zeros(S, S, dtype=F64)
        Q[: self.mask, self.mask] = 1.0
        Q[torch.arange(self.mask), torch.arange(self.mask)] = -1.0
        return Q

    def transition(self, sigma):
        keep = torch.exp(-_col(sigma))  # [B, 1, 1]
        eye = torch.eye(self.num_states, dtype=F64)
        P = eye * keep
        P[:, :, self.mask] = 1 - keep[:, :, 0]
        P[:, self.mask, self.mask] = 1.0
        return P

    def transition_rows(self, x, sigma):
        keep = torch.exp(-_col(sigma))
        rows = torch.nn.functional.one_hot(x, self.num_states).to(F64) * keep
        rows[..., self.mask] = torch.where(x == self.mask, 1.0, 1 - keep[..., 0])
        return rows

    def transition_cols(self, x, sigma):
        keep = torch.exp(-_col(sigma))
        masked = (x == self.mask).unsqueeze(-1)
        cols = torch.where(masked, 1 - keep, torch.nn.functional.one_hot(x, self.num_states).to(F64) * keep)
        cols[..., self.mask] = torch.where(x == self.mask, 1.0, 0.0)
        return cols

    def movable(self, x):
        return x == self.mask  # an unmasked token never moves again

    def rate_cols(self, x):
        masked = (x == self.mask).unsqueeze(-1)
        cols = torch.where(masked, 1.0, -torch.nn.functional.one_hot(x, self.num_states).to(F64))
        cols[..., self.mask] = 0.0
        return cols

    def sample(self, x, sigma, u):
        p_mask = -torch.expm1(-sigma.to(F64)).unsqueeze(-1)  # [B, 1]
        return torch.where(u.to(F64) < p_mask, self.mask, x)

    def ratio_from_denoiser(self, probs, x, sigma):
        # masked: r_y = p(y) e^{−σ}/(1 − e^{−σ}); unmasked: r_x = 1, r_MASK = e^σ − 1, others 0.
        s = _col(sigma)
        odds = 1.0 / torch.expm1(s)
        masked = (x == self.mask).unsqueeze(-1)
        r = torch.zeros(*x.shape, self.num_states, dtype=F64)
        r[..., : self.mask] = probs.to(F64)[..., : self.mask] * odds
        r[..., self.mask] = 1.0
        unmasked = torch.nn.functional.one_hot(x, self.num_states).to(F64)
        unmasked[..., self.mask] = torch.expm1(s)[..., 0]
        return torch.where(masked, r, unmasked)

    def staggered(self, ratio, dsigma):
        grow = torch.exp(_col(dsigma))
        out = ratio * grow
        rest = ratio[..., : self.mask].sum(-1)
        out[..., self.mask] = ratio[..., self.mask] + (1 - grow[..., 0]) * rest
        return out


class Uniform(Kernel):
    """Q = 11ᵀ/S − I: P(σ) = e^{−σ} I + (1 − e^{−σ})/S 11ᵀ (SEDD's uniform graph)."""

    def __init__(self, num_states: int):
        if num_states < 2:
            raise ValueError(f"uniform kernel needs at least 2 states, got {num_states}")
        self.num_states = self.data_states = num_states

    def rate_matrix(self):
        S = self.num_states
        return torch.full((S, S), 1.0 / S, dtype=F64) - torch.eye(S, dtype=F64)

    def stationary(self):
        return self.prior_probs()

    def max_tv_to_stationary(self, sigma):
        return float(torch.exp(-torch.tensor(float(sigma), dtype=F64))) * (1 - 1 / self.num_states)

    def _ab(self, sigma):
        keep = torch.exp(-_col(sigma))
        return keep, (1 - keep) / self.num_states

    def transition(self, sigma):
        a, b = self._ab(sigma)
        return torch.eye(self.num_states, dtype=F64) * a + b

    def transition_rows(self, x, sigma):
        a, b = self._ab(sigma)
        return torch.nn.functional.one_hot(x, self.num_states).to(F64) * a + b

    transition_cols = transition_rows  # P(σ) is symmetric

    def rate_cols(self, x):
        return 1.0 / self.num_states - torch.nn.functional.one_hot(x, self.num_states).to(F64)

    def sample(self, x, sigma, u):
        p_move = -torch.expm1(-sigma.to(F64)).unsqueeze(-1)  # [B, 1]
        u = u.to(F64)
        resampled = torch.floor(u / p_move.clamp_min(1e-300) * self.num_states).long().clamp_(0, self.num_states - 1)
        return torch.where(u < p_move, resampled, x)

    def ratio_from_denoiser(self, probs, x, sigma):
        a, b = self._ab(sigma)
        w = probs.to(F64) / b
        at_x = torch.nn.functional.one_hot(x, self.num_states).bool()
        w = torch.where(at_x, probs.to(F64) / (a + b), w)
        return a * w + b * w.sum(-1, keepdim=True)

    def staggered(self, ratio, dsigma):
        grow = torch.exp(_col(dsigma))
        return grow * ratio + (1 - grow) / self.num_states * ratio.sum(-1, keepdim=True)


class GaussianTarget(Kernel):
    """tauLDR's ordinal kernel: Gaussian-weighted moves toward the middle, reweighted so the
    stationary law is ∝ exp(−(k + 1 − S/2)²/(2 Q_sigma²)) over states k = 0..S−1 (detailed balance);
    built in float64 in the published loop order."""

    ordinal = True

    def __init__(self, num_states: int, rate_sigma: float = 6.0, Q_sigma: float = 512.0):
        if num_states < 2:
            raise ValueError(f"Gaussian kernel needs at least 2 states, got {num_states}")
        S = self.num_states = self.data_states = num_states
        self.Q_sigma = Q_sigma
        vals = np.exp(-np.arange(S) ** 2 / rate_sigma**2)
        rate = np.zeros((S, S))
        for i in range(S):
            for j in range(S):
                if i < S // 2 and i < j < S - i:
                    rate[i, j] = vals[j - i - 1]
                elif i > S // 2 and S - 1 - i < j < i:
                    rate[i, j] = vals[i - j - 1]
        # In place, row by row: later entries read ones already reweighted (as published).
        for i in range(S):
            for j in range(S):
                if rate[j, i] > 0.0:
                    rate[i, j] = rate[j, i] * np.exp(
                        -((j + 1) ** 2 - (i + 1) ** 2 + S * (i + 1) - S * (j + 1)) / (2 * Q_sigma**2)
                    )
        rate -= np.diag(np.diag(rate))
        rate -= np.diag(rate.sum(1))
        eigvals, eigvecs = np.linalg.eig(rate)
        self._Q = torch.from_numpy(rate)
        self._eigvals = torch.from_numpy(eigvals.real.copy())
        self._V = torch.from_numpy(eigvecs.real.copy())
        self._Vinv = torch.from_numpy(np.linalg.inv(eigvecs).real.copy())

    def rate_matrix(self):
        return self._Q.clone()

    def prior_probs(self):
        # The kernel's exact stationary law. tauLDR starts from exp(−(k + 1 − S//2)²/(2 Q_sigma²)): the
        # same for even S (CIFAR-10's 256), half a state off it for odd S (the digits' 17).
        k = torch.arange(1, self.num_states + 1, dtype=F64)
        return torch.softmax(-((k - self.num_states / 2) ** 2) / (2 * self.Q_sigma**2), 0)

    def transition(self, sigma):
        sigma = sigma.to(F64).reshape(-1)
        uniq, inverse = torch.unique(sigma, return_inverse=True)  # samplers pass one time for the batch
        P = (self._V * torch.exp(uniq[:, None] * self._eigvals)[:, None, :]) @ self._Vinv
        P = torch.where(P < 1e-8, 0.0, P)  # tauLDR: below float accuracy, treat as impossible
        return P[inverse]


def make_kernel(name: str, num_states: int, **params) -> Kernel:
    """num_states counts data states (the absorbing kernel adds MASK)."""
    kernels = {"absorbing": Absorbing, "uniform": Uniform, "gaussian": GaussianTarget}
    if name not in kernels:
        raise ValueError(f"unknown kernel {name!r}; expected one of {sorted(kernels)}")
    return kernels[name](num_states, **params)
