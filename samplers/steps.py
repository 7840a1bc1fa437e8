"""One step of each sampler, from time t down to s < t: one model call at (x, t) (the θ-trapezoidal step: two).

Each step is a plain function `step(model, x, t, s, generator) -> x`; the grid is the caller's.
Categorical draws are inverse-CDF draws in float64 (float32 Gumbel-max lowers the temperature).
"""
from __future__ import annotations

import torch

from models.protocol import ModelOutput, concrete_ratios, rates_from_ratios, tweedie_probs
from samplers.schedules import unmasked_counts

F64 = torch.float64


CHUNK_BYTES = 64 * 2**20  # float64 work per chunk of positions: a step's memory stays near the model's output


def sample_categorical(probs: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Index draws from unnormalized non-negative probs [..., K] (float64). [...]"""
    u = torch.rand(probs.shape[:-1] + (1,), generator=generator, dtype=F64)
    return inverse_cdf(probs, u)


def inverse_cdf(probs: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """The categorical draw of probs [..., K] (unnormalized) at the uniforms u [..., 1]. [...]"""
    cdf = probs.to(F64).cumsum(-1)
    total = cdf[..., -1:]
    if not torch.isfinite(total).all() or (total <= 0).any():
        raise ValueError("categorical probabilities must be finite with a positive sum; the model produced "
                         f"totals in [{float(total.min()):.3g}, {float(total.max()):.3g}]")
    return torch.searchsorted(cdf, u * total).squeeze(-1).clamp_(max=probs.shape[-1] - 1)


def sample_by_positions(make_probs, x: torch.Tensor, K: int, generator: torch.Generator,
                        movable: torch.Tensor | None = None) -> torch.Tensor:
    """One categorical draw per position of x [B, L]; probs are built only where a token can move
    (`movable` [B, L], default everywhere; the others keep their token), in chunks of rows:
    make_probs(b, l) -> [m, K] float64 at positions (b[i], l[i]). Draws the same uniforms as
    sample_categorical on the whole [B, L, K] would, so the samples depend neither on the chunk size
    nor on skipping rows that cannot move (their probs are one-hot at their token). [B, L]"""
    B, L = x.shape
    u = torch.rand(B, L, 1, generator=generator, dtype=F64)
    b, l = (movable if movable is not None else torch.ones_like(x, dtype=torch.bool)).nonzero(as_tuple=True)
    out = x.clone()
    step = max(1, CHUNK_BYTES // (K * 8))
    for i in range(0, len(b), step):
        bi, li = b[i:i + step], l[i:i + step]
        out[bi, li] = inverse_cdf(make_probs(bi, li), u[bi, li])
    return out


def position_chunks(B: int, L: int, K: int) -> list[slice]:
    """Slices of positions whose float64 [B, l, K] work fits CHUNK_BYTES."""
    step = max(1, CHUNK_BYTES // (B * K * 8))
    return [slice(i, i + step) for i in range(0, L, step)]


def positions(out: ModelOutput, sl: slice) -> ModelOutput:
    """The model output at a slice of positions."""
    return ModelOutput(out.kind, out.values[:, sl])


def rows(out: ModelOutput, x: torch.Tensor, t: float, b: torch.Tensor, l: torch.Tensor):
    """The output and tokens at positions (b[i], l[i]) as one sequence of m positions at the common time t
    of the batch: (ModelOutput [1, m, ·], x [1, m], t [1]); the protocol's functions apply unchanged, and
    kernels that build P(σ) build it once."""
    return ModelOutput(out.kind, out.values[b, l].unsqueeze(0)), x[b, l].unsqueeze(0), _times(x[:1], t)


def _times(x: torch.Tensor, t: float) -> torch.Tensor:
    return torch.full((x.shape[0],), float(t), dtype=F64)


def _rates(model, x, t):
    tb = _times(x, t)
    return rates_from_ratios(concrete_ratios(model(x, tb), x, tb, model.process), x, tb, model.process)


def euler_step(model, x, t, s, generator):
    """SEDD's Euler step: P(x_l → y) = (t − s) R̂_t(x)_{l,y}, staying takes the rest (clipped at 0)."""
    tb = _times(x, t)
    proc = model.process
    out = model(x, tb)

    def probs(b, l):
        o, xs, ts = rows(out, x, t, b, l)
        p = (t - s) * rates_from_ratios(concrete_ratios(o, xs, ts, proc), xs, ts, proc)  # [1, m, S]
        stay = (1 - p.sum(-1)).clamp_min(0.0)
        return p.scatter_(-1, xs.unsqueeze(-1), stay.unsqueeze(-1))[0]

    return sample_by_positions(probs, x, proc.num_states, generator, proc.kernel.movable(x))


MULTI_JUMPS = ("reject", "last")


def tau_leaping_step(model, x, t, s, generator, multi_jump: str = "reject"):
    """τ-leaping: Poisson jump counts n_{l,y} ~ Poisson((t − s) R̂_{l,y}), rates frozen at (x, t).

    Ordinal kernels add the jumps as moves, x + Σ_y n_{l,y}(y − x_l), clamped (tauLDR). Categorical
    kernels draw the total N_l ~ Poisson(Σ_y λ_{l,y}) and a destination ∝ λ; a position with several
    jumps follows `multi_jump`:
    - 'reject': it stays (tauLDR's `reject_multiple_jumps`);
    - 'last': it takes the destination of its last jump. Each jump is "set token l to y" and their times
      are i.i.d. uniform on the step, so the last one's destination is ∝ λ as well: this is the path of the
      frozen-rate Poisson marks (the KLUB's coarse path under jys.coarse_state=start, up to its rule for
      a return to x_{t1,l}, which frozen marks never make), where 'reject' keeps in place a share
      (1 − (1 + Λ) e^{−Λ}) / (1 − e^{−Λ}) of the positions that jump (Λ = Σ_y λ).
    Both draw the same random numbers, so they differ only at positions with N_l ≥ 2.
    """
    if multi_jump not in MULTI_JUMPS:
        raise ValueError(f"unknown multi_jump {multi_jump!r}; expected one of {MULTI_JUMPS}")
    lam = (t - s) * _rates(model, x, t)  # [B, L, S]
    if model.process.kernel.ordinal:
        return _ordinal_jumps(lam, x, generator)
    return _categorical_jumps(lam, x, generator, multi_jump)


def _categorical_jumps(lam: torch.Tensor, x: torch.Tensor, generator: torch.Generator, multi_jump: str) -> torch.Tensor:
    """Poisson marks "set token l to y" of intensities lam [B, L, S] (the step's length folded in) from x: the total
    N_l ~ Poisson(Σ_y λ_{l,y}) and a destination ∝ λ; several jumps at a position follow `multi_jump`."""
    total = lam.sum(-1)
    count = torch.poisson(total, generator=generator)
    dest = sample_categorical(lam + (total == 0).unsqueeze(-1).to(F64), generator)
    return torch.where(count == 1 if multi_jump == "reject" else count >= 1, dest, x)


def _ordinal_jumps(lam: torch.Tensor, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Poisson moves of intensities lam [B, L, S] (the step folded in) added to x, x + Σ_y n_{l,y}(y − x_l), clamped
    (tauLDR's ordinal τ-leaping)."""
    jumps = torch.poisson(lam, generator=generator)
    states = torch.arange(lam.shape[-1], dtype=F64)
    move = (jumps * (states - x.unsqueeze(-1).to(F64))).sum(-1)
    return (x + move.long()).clamp_(0, lam.shape[-1] - 1)


def _displacement_rates(rates: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Rates [B, L, S] to each state, as rates [B, L, 2S − 1] of each move d = y − x_l (index d + S − 1; moves
    that leave the state space have rate 0)."""
    S = rates.shape[-1]
    d = torch.arange(-(S - 1), S)
    y = x.unsqueeze(-1) + d  # [B, L, 2S − 1]
    inside = (y >= 0) & (y < S)
    return torch.where(inside, rates.gather(-1, y.clamp(0, S - 1)), torch.zeros((), dtype=rates.dtype))


def trapezoid_weights(theta: float) -> tuple[float, float]:
    """θ-trapezoidal's extrapolation weights (α1, α2), α1 = 1/(2θ(1 − θ)), α2 = ((1 − θ)² + θ²)/(2θ(1 − θ));
    α1 − α2 = 1."""
    if not 0.0 < theta < 1.0:
        raise ValueError(f"trapezoidal theta must lie in (0, 1), got {theta}")
    return 1.0 / (2 * theta * (1 - theta)), ((1 - theta) ** 2 + theta ** 2) / (2 * theta * (1 - theta))


def trapezoidal_step(model, x, t, s, generator, theta: float = 0.5, multi_jump: str = "reject", hold=None):
    """θ-trapezoidal τ-leaping (Ren et al. 2025, "Fast solvers for discrete diffusion models"): two model calls.

    Stage 1: τ-leaping from (x, t) over θΔ (Δ = t − s) gives y* at t_θ = t − θΔ. Stage 2: from y*, jumps with the
    extrapolated intensities (α1 R̂_{t_θ}(y*) − α2 R̂_t(x))₊ over (1 − θ)Δ, α1 = 1/(2θ(1 − θ)),
    α2 = ((1 − θ)² + θ²)/(2θ(1 − θ)) (α1 − α2 = 1); negative extrapolations are clipped to 0, as the paper's
    algorithm does. The two intensities pair by destination for categorical kernels ("set token l to y": a token
    unmasked in stage 1 has no rate left, so its extrapolation clips to 0) and by move d = y − x_l for ordinal
    ones (tauLDR's moves, added and clamped as τ-leaping does). Several jumps at a categorical position follow
    `multi_jump`, as in tau_leaping_step. hold(x) puts a condition prefix back into y* before the second call."""
    a1, a2 = trapezoid_weights(theta)
    if multi_jump not in MULTI_JUMPS:
        raise ValueError(f"unknown multi_jump {multi_jump!r}; expected one of {MULTI_JUMPS}")
    dt = t - s
    t_mid = t - theta * dt
    r0 = _rates(model, x, t)  # [B, L, S]
    ordinal = model.process.kernel.ordinal
    S = r0.shape[-1]
    if ordinal:
        moves = torch.arange(-(S - 1), S, dtype=F64)
        y = _ordinal_jumps(theta * dt * r0, x, generator)
        y = hold(y) if hold is not None else y
        r1 = _rates(model, y, t_mid)
        lam = (a1 * _displacement_rates(r1, y) - a2 * _displacement_rates(r0, x)).clamp_(min=0)  # d = 0: R̂ = 0, clipped
        n = torch.poisson((1 - theta) * dt * lam, generator=generator)
        return (y + (n * moves).sum(-1).long()).clamp_(0, S - 1)
    y = _categorical_jumps(theta * dt * r0, x, generator, multi_jump)
    y = hold(y) if hold is not None else y
    r1 = _rates(model, y, t_mid)
    lam = (a1 * r1 - a2 * r0).clamp_(min=0)  # R̂(y* → y*_l) = 0: no mark to the token y* holds survives the clip
    return _categorical_jumps((1 - theta) * dt * lam, y, generator, multi_jump)


def tweedie_step(model, x, t, s, generator):
    """SEDD's analytic (Tweedie τ-leaping) step; absorbing and uniform kernels."""
    tb = _times(x, t)
    proc = model.process
    out = model(x, tb)
    dsigma = proc.sigma(tb) - proc.sigma(_times(x, s))
    def probs(b, l):
        o, xs, ts = rows(out, x, t, b, l)
        return tweedie_probs(o, xs, ts, dsigma[:1], proc)[0]

    return sample_by_positions(probs, x, proc.num_states, generator, proc.kernel.movable(x))


def kgillespie_step(model, x, t, s, generator):
    """k-Gillespie (absorbing): unmask exactly k(s) − k(t) tokens, chosen uniformly among the masked
    ones (every masked token has the same unmasking rate), each drawn from the model's p(x_0,l | x_t)."""
    proc = model.process
    mask = proc.kernel.mask
    B, L = x.shape
    k_now = int((x[0] != mask).sum())
    k_next = unmasked_counts([s], proc, L)[0]
    n = k_next - k_now
    if n <= 0:
        raise ValueError(f"k-Gillespie step from t={t:.6g} to s={s:.6g} unmasks {n} tokens; the grid must "
                         "raise the unmasked count at every step (see samplers.schedules.token_counts)")
    tb = _times(x, t)
    out = model(x, tb)
    keys = torch.rand(B, L, generator=generator, dtype=F64).masked_fill_(x != mask, -1.0)
    chosen = keys.topk(n, dim=1).indices  # [B, n]
    picked = ModelOutput(out.kind, out.values.gather(1, chosen.unsqueeze(-1).expand(-1, -1, out.values.shape[-1])))
    ratio = concrete_ratios(picked, x.gather(1, chosen), tb, proc)[..., :mask]  # [B, n, S0] ∝ p(x_0,l | x_t)
    return x.scatter(1, chosen, sample_categorical(ratio, generator))


STEPS = {"euler": euler_step, "tau_leaping": tau_leaping_step, "tweedie": tweedie_step, "kgillespie": kgillespie_step,
         "trapezoidal": trapezoidal_step}
