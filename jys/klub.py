"""The KL upper bound (KLUB) of one refinement t1 > t2 > t3.

Coarse path: one τ-leaping step t1 → t3 with the model read at (x_{t1}, t1). Fine path: the same
on [t2, t1], then the model read again at (x_{t2}, t2). The paths agree until t2 (both are at x_{t2});
on [t3, t2] each is a Poisson process over the marks the sampler applies, with intensities λ1 (coarse,
frozen at t1) and λ2 (fine), so by Girsanov

  girsanov:  KLUB(t2) = (t2 − t3) · E Σ_marks [ λ2 log(λ2/λ1) − λ2 + λ1 ]
  reference: KLUB(t2) = (t2 − t3) · E Σ_marks λ2 log(λ2/λ1)        (the published code)
  destination: girsanov with each position's coarse intensities rescaled to the fine total,
             λ1' = λ1 · Σλ2/Σλ1, so that per position the integrand is Λ2 · KL(π2 ‖ π1) (Λ the total rate,
             π = λ/Λ where a jump goes): the divergence of where tokens jump, without that of when they jump.
             Girsanov's integrand splits exactly into these two parts, [Λ2 log(Λ2/Λ1) − Λ2 + Λ1] + Λ2 KL(π2‖π1).
             Under absorbing kernels the "when" part is an artefact of the frozen-rate model: Euler and Tweedie
             unmask each token with the exact probability of the step (docs/results/count.md, "Euler and Tweedie give identical
             samples"), k-Gillespie with exact counts, so only the "where" part reaches the samples.

the expectation over x_0 from the data and the forward joint (x_{t1}, x_{t2}), with common random
numbers across the t2 of one search.

Marks, as the sampler applies them:
- categorical kernels (absorbing, uniform): "set token l to y"; λ(l, y) = R̂(x → x with x_l ← y).
- ordinal kernels (tauLDR's Gaussian; τ-leaping adds Σ n·(y − x)): "move token l by d".
The fine path reads its rates at x_{t2}. Where the coarse path reads them (`coarse_state`) matters only
for tokens that changed between t1 and t2 (x_{t2,l} ≠ x_{t1,l}):
- 'start', the literal τ-leaping step: every move keeps the intensity frozen at x_{t1,l}, so λ1 and λ2
  pair by displacement d for ordinal kernels (λ1(l, d) = R̂_{t1}(x_{t1,l} → x_{t1,l} + d)) and by
  destination for categorical ones. Two kinds of marks then need a convention:
  · a no-op, "set token l to y" with y its current value: it changes no path, so it has no intensity
    (uniform kernels; the absorbing kernel keeps the literal Σ R1 of a token unmasked since t1, whose
    −R2 + R1 terms cancel in expectation under loglinear noise);
  · a move the frozen rates cannot make (λ1 = 0 < λ2: jumping back to x_{t1,l}, or a displacement that
    leaves the state space from x_{t1,l}), where the KL is literally infinite whatever t2: its coarse
    intensity is the coarse model's rate for that move from the current value (below).
- 'current', the frozen-time jump process: time and the other tokens stay frozen at (x_{t1}, t1), but
  token l moves with the coarse model's rates from its current value z = x_{t2,l}, read from the same
  model call: R̂_{t1}(z → y) = dσ̄/dt(t1) · Q[y, z] · r1_y / r1_z (r1 are ratios against x_{t1}, so
  r1_y / r1_z compares x_l = y with x_l = z in the context of x_{t1}). Both paths then move from the
  same value, so destination and displacement pair alike. Where the forward chain churns among data
  states, 'start' counts every stale move as divergence; 'current' counts only what the frozen read gets
  wrong. For an absorbing kernel a changed token is unmasked and has no moves in either path.
- 'auto' (default): resolve_coarse_state below ('start' for absorbing kernels, 'denoiser' for uniform ones and for
  ordinal ones whose model gives a denoiser, else 'current'); docs/results/jys.md's ablations compare them.
0·log 0 = 0; a zero coarse rate against a positive fine one in any other mark is a model error.

Memory: every tensor of the size [B, L, S] is float32 (the stored coarse log ratios) or the model's output;
the float64 arithmetic runs over chunks of positions (`CHUNK_BYTES`), and absorbing kernels visit only
the positions masked at t1 (every other row of both rate matrices is 0).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from common import dist
from models.protocol import ModelOutput, concrete_ratios, rates_from_ratios
from samplers.steps import trapezoid_weights

F64 = torch.float64
OBJECTIVES = ("auto", "girsanov", "reference", "destination", "reverse")
COARSE_STATES = ("auto", "start", "current", "denoiser")
CHUNK_BYTES = 64 * 2**20  # float64 work per chunk of positions


@dataclass
class Coarse:
    """The coarse path's model read at (x_{t1}, t1): log ratios stored in float32 (no ratio underflows
    to 0 there; exp runs in float64 per chunk). [M, L] and [M, L, S]"""

    x: torch.Tensor  # [M, L]
    t: torch.Tensor  # [M] float64
    log_ratio: torch.Tensor  # [M, L, S] float32
    # log p(x0_l | x_{t1,−l}) [M, L, S0] float32, kept for ordinal kernels (and uniform ones on request) when the model gives a denoiser: the
    # frozen-denoiser path and the step's exact law carry it forward (stable), where the ratios would need
    # expm(+ΔσQ), which overflows for tauLDR's rates (see `context_posterior`)
    log_context: torch.Tensor | None = None

    def rows(self, i: int, j: int) -> "Coarse":
        ctx = None if self.log_context is None else self.log_context[i:j]
        return Coarse(self.x[i:j], self.t[i:j], self.log_ratio[i:j], ctx)

    def context(self, *index) -> torch.Tensor | None:
        """p(x0_l | x_{t1,−l}) in float64 at `index`, or None."""
        return None if self.log_context is None else self.log_context[index].to(F64).exp()


def context_posterior(probs: torch.Tensor, x: torch.Tensor, t: torch.Tensor, process) -> torch.Tensor:
    """p(x0_l | x_{t,−l}) [B, L, S0] from the denoiser p(x0_l | x_t) [B, L, S0]: the forward process noises each
    token alone, so p(x0_l | x_t) ∝ p(x0_l | x_{t,−l}) · P_t[x0_l, x_l], and dividing by the column undoes it.
    An x0 that cannot reach x_l (P_t below the kernel's floor) gets 0: its context weight is not identified."""
    S0 = process.data_states
    col = process.kernel.transition_cols(x, process.sigma(t))[..., :S0]
    post = torch.where(col > 0, probs.to(F64) / col.clamp_min(1e-300), 0.0)
    return post / post.sum(-1, keepdim=True).clamp_min(1e-300)


def carried(process, ratio1: torch.Tensor, context1: torch.Tensor | None, t1: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """m_s ∝ p_s(x_l = · | the context of x_{t1}) [b, l, S]: the token's marginal at s < t1 with the other tokens
    frozen at x_{t1} (the Tweedie step's numerator). From the context posterior where kept (Σ_x0 p(x0|ctx) P_s[x0, ·],
    forward transitions only), else expm(−ΔσQ)ᵀ r1 (categorical kernels)."""
    if context1 is None:
        return process.kernel.staggered(ratio1, process.sigma(t1) - process.sigma(s))
    P = process.kernel.transition(process.sigma(s.expand(context1.shape[0])))[:, : process.data_states]
    return torch.matmul(context1, P)


def coarse_read(model, x: torch.Tensor, t: torch.Tensor, batch_size: int, context: bool = False) -> Coarse:
    """The model's log ratios at (x, t) in batches of batch_size sequences, kept in float32, and where the model
    gives a denoiser the context posterior too: always under ordinal kernels (their coarse path needs it), under
    uniform ones if `context` (the reach step term; it doubles the read's memory). Under torchrun batch k is read
    by rank k mod P and the reads are summed over ranks (each entry filled by one rank)."""
    process = model.process
    store = torch.zeros(*x.shape, process.num_states, dtype=torch.float32)
    keep = process.kernel.ordinal or (context and process.kernel.mask is None)
    context = None
    for i in range(0, x.shape[0], batch_size):
        if not dist.mine(i // batch_size):
            continue
        xb, tb = x[i:i + batch_size], t[i:i + batch_size]
        out = model(xb, tb)
        if out.kind == "score":  # already log ratios: no float64 copy of [b, L, S]
            store[i:i + batch_size] = out.values
            continue
        store[i:i + batch_size] = concrete_ratios(out, xb, tb, process).log()
        if keep:
            if context is None:
                context = torch.zeros(*x.shape, process.data_states, dtype=torch.float32)
            context[i:i + batch_size] = context_posterior(out.values, xb, tb, process).log()
    if dist.any_true(context is not None):  # under torchrun a rank may have read no batch
        context = dist.sum_disjoint(context if context is not None else torch.zeros(*x.shape, process.data_states))
    return Coarse(x, t, dist.sum_disjoint(store), context)


def draw_pair(process, x0: torch.Tensor, seed: int, t1: float, t2: torch.Tensor):
    """(x_{t1}, x_{t2}) from the seed alone: the same uniforms for every t2 of a search."""
    g = torch.Generator().manual_seed(seed)
    M = x0.shape[0]
    return process.sample_pair(x0, torch.full((M,), t1, dtype=F64), t2, g)


def _marks(rates: torch.Tensor, x: torch.Tensor, ordinal: bool) -> torch.Tensor:
    """Intensities of the sampler's marks: by destination y [.., S], or for ordinal kernels by
    displacement d = −(S−1) … S−1 [.., 2S − 1]; 0 where the move leaves the state space."""
    if not ordinal:
        return rates
    S = rates.shape[-1]
    dest = x.unsqueeze(-1) + torch.arange(-(S - 1), S)  # [.., 2S − 1]
    inside = (dest >= 0) & (dest < S)
    return torch.where(inside, rates.gather(-1, dest.clamp(0, S - 1)), 0.0)


def _current_state_rates(process, ratio1: torch.Tensor, x1: torch.Tensor, x2: torch.Tensor, t1: torch.Tensor):
    """The coarse model's rates from the current value z = x_{t2,l} in the context of x_{t1}:
    dσ̄/dt(t1) · Q[y, z] · r1_y / r1_z. [b, l, S]"""
    r_z = ratio1.gather(-1, x2.unsqueeze(-1))
    cols = process.kernel.rate_cols(x2)
    rates = torch.where((cols > 0) & (r_z > 0), process.sigma_rate(t1).reshape(-1, 1, 1) * cols * ratio1 / r_z, 0.0)
    return rates.scatter(-1, x2.unsqueeze(-1), 0.0)


def _denoiser_rates(process, ratio1: torch.Tensor, context1: torch.Tensor | None, x2: torch.Tensor, t1: torch.Tensor,
                    t2: torch.Tensor) -> torch.Tensor:
    """The rates at (x_{t2,l}, t2) of the frozen-denoiser process: each token moves alone under the exact reverse
    dynamics of its marginal at t1 (the coarse read, other tokens frozen at x_{t1}), carried to t2 by the kernel
    (`carried`; the Tweedie step's numerator). Its path is the Tweedie sampler's, so the Girsanov integrand
    against it counts only the change of context, never a mistimed rate. [b, l, S]"""
    m = carried(process, ratio1, context1, t1, t2).clamp_min(0.0)
    m_z = m.gather(-1, x2.unsqueeze(-1))
    ratio = torch.where(m_z > 0, m / torch.where(m_z > 0, m_z, 1.0), 0.0)
    return rates_from_ratios(ratio, x2, t2, process)


def _chunk_terms(process, ratio1, context1, x1, t1, ratio2, x2, t2, objective: str, coarse_state: str,
                 R1: torch.Tensor | None = None) -> torch.Tensor:
    """Σ over the chunk's positions and marks of the integrand, per sequence. [b] float64

    R1: the coarse path's frozen rates from x1 when they are not the read's at (x1, t1) (the θ-trapezoidal step's
    extrapolated ones; absorbing kernels, coarse state 'start')."""
    kernel = process.kernel
    R1 = rates_from_ratios(ratio1, x1, t1, process) if R1 is None else R1
    R2 = rates_from_ratios(ratio2, x2, t2, process)
    changed = (x1 != x2).unsqueeze(-1)  # [b, l, 1]
    if coarse_state == "denoiser":
        # Where the carried denoiser is not positive (ratios that are no marginal of the kernel: a trained model's
        # error; never the oracle's), the mark reads the coarse rate from the current value, as 'current' does.
        R1 = _denoiser_rates(process, ratio1, context1, x2, t1, t2)
        R1 = torch.where(R1 > 0, R1, _current_state_rates(process, ratio1, x1, x2, t1))
    elif kernel.mask is None and not kernel.ordinal:
        R1 = torch.where(changed, R1.scatter(-1, x2.unsqueeze(-1), 0.0), R1)  # no-op marks have no intensity
    lam1, lam2 = _marks(R1, x2 if coarse_state == "denoiser" else x1, kernel.ordinal), _marks(R2, x2, kernel.ordinal)
    if coarse_state != "denoiser" and (coarse_state == "current" or kernel.mask is None) and changed.any():
        fill = _marks(_current_state_rates(process, ratio1, x1, x2, t1), x2, kernel.ordinal)
        lam1 = torch.where(changed if coarse_state == "current" else changed & (lam1 <= 0) & (lam2 > 0), fill, lam1)
    if objective == "destination":  # the coarse marks with the fine total rate of each position
        tot1, tot2 = lam1.sum(-1, keepdim=True), lam2.sum(-1, keepdim=True)
        lam1 = torch.where(tot1 > 0, lam1 * (tot2 / torch.where(tot1 > 0, tot1, 1.0)), lam1)
    if objective == "reverse":  # KL(coarse ‖ fine): the sampler's path against the process's
        bad = (lam1 > 0) & ~(lam2 > 0)
        if bad.any():
            raise ValueError(f"the model gives {int(bad.sum())} reverse rates that are positive at t1={float(t1.max()):.4g} "
                             f"but 0 at t2={float(t2.max()):.4g}: the reverse objective needs positive fine rates")
        pos = lam1 > 0
        log_term = torch.where(pos, lam1 * (torch.log(torch.where(pos, lam1, 1.0)) - torch.log(torch.where(pos, lam2, 1.0))),
                               0.0)
        return (log_term - lam1 + lam2).sum((1, 2))
    bad = (lam2 > 0) & ~(lam1 > 0)
    if bad.any():
        b, l, _ = torch.nonzero(bad)[0].tolist()
        raise ValueError(f"the model gives {int(bad.sum())} reverse rates that are 0 at t1={float(t1.max()):.4g} but "
                         f"positive at t2={float(t2.max()):.4g} (coarse_state={coarse_state}; first at sequence {b}, "
                         f"position {l} of this chunk): its ratios must be positive where the process can jump")
    pos = lam2 > 0
    log_term = torch.where(pos, lam2 * (torch.log(torch.where(pos, lam2, 1.0)) - torch.log(torch.where(pos, lam1, 1.0))),
                           0.0)
    if objective == "reference":
        return log_term.sum((1, 2))
    return (log_term - lam2 + lam1).sum((1, 2))


def klub_terms(process, coarse: Coarse, fine: ModelOutput, x2: torch.Tensor, t2: torch.Tensor,
               objective: str, coarse_state: str = "auto", first: int = 0) -> torch.Tensor:
    """Σ_{l >= first, marks} of the KLUB integrand per sample, without the duration factor. [M] float64

    coarse: the stored read at (x_{t1}, t1) of these M sequences; fine: the model's output at (x_{t2}, t2);
    first: positions before it are a condition prefix (data in both paths, never moved): not summed."""
    M, L = x2.shape
    S = process.num_states
    coarse_state = resolve_coarse_state(coarse_state, process.kernel, coarse.log_context is not None)
    t1 = coarse.t.to(F64)
    t2 = t2.to(F64)
    out = torch.zeros(M, dtype=F64)
    if process.kernel.mask is not None:
        # Absorbing: only positions masked at t1 have rates in either path; as rows of length-1 "sequences".
        masked = coarse.x == process.kernel.mask
        masked[:, :first] = False
        b, l = torch.nonzero(masked, as_tuple=True)
        step = max(1, CHUNK_BYTES // (8 * S * 8))
        for i in range(0, b.numel(), step):
            bi, li = b[i:i + step], l[i:i + step]
            x1c, x2c = coarse.x[bi, li].unsqueeze(1), x2[bi, li].unsqueeze(1)  # [n, 1]
            r2 = concrete_ratios(ModelOutput(fine.kind, fine.values[bi, li].unsqueeze(1)), x2c, t2[bi], process)
            terms = _chunk_terms(process, coarse.log_ratio[bi, li].unsqueeze(1).to(F64).exp(), None, x1c, t1[bi], r2, x2c, t2[bi],
                                 objective, coarse_state)
            out.index_add_(0, bi, terms)
        return out
    step = max(1, CHUNK_BYTES // (M * S * 8 * (3 if process.kernel.ordinal else 1)))
    for i in range(first, L, step):
        sl = slice(i, i + step)
        x1c, x2c = coarse.x[:, sl], x2[:, sl]
        r2 = concrete_ratios(ModelOutput(fine.kind, fine.values[:, sl]), x2c, t2, process)
        out += _chunk_terms(process, coarse.log_ratio[:, sl].to(F64).exp(), coarse.context(slice(None), sl), x1c, t1,
                            r2, x2c, t2, objective, coarse_state)
    return out


def extrapolated_terms(process, start: Coarse, mid: Coarse, fines: list[Coarse], theta: float,
                       objective: str = "girsanov", first: int = 0) -> torch.Tensor:
    """The KLUB integrand of the θ-trapezoidal step's second leap at each fine read, per sample, without the
    duration factor. [len(fines), M] float64

    The step from t to s reads the model at (x_t, t) (`start`), leaps over θ(t − s) to y* at t_θ, reads it there
    (`mid`), then leaps to s with the frozen intensities λ̃ = (α1 R̂_{t_θ}(y*) − α2 R̂_t(x_t))₊
    (samplers.steps.trapezoid_weights). Its KL from the process, by the chain rule over (x_{t_θ}, x_s) with x_{t_θ}
    drawn from the process (not the sampler), is at most [the first leap's KL] + E[the second leap's from x_{t_θ}];
    each leap's is at most its Girsanov path KL (the literal τ-leap, multi_jump=last). This returns the second
    leap's integrand, λ̃ against the process's rates, at every fine read (x_q, t_q), t_q <= t_θ (at t_q = t_θ it is
    not 0: the extrapolation differs from the rate there already). Absorbing kernels, coarse state 'start': a
    position masked at t_θ was masked at t (the masks nest), so both reads give its rates from the mask; a position
    unmasked between t_θ and t_q has no fine rates and adds Σ_y λ̃_y (the frozen marks that would still re-set it).
    Where the clip leaves λ̃_y = 0 the literal path KL is infinite wherever the process can still move to y, so
    there J reads the midpoint's own rate R̂_{t_θ}(y*)_y (the first-order leap's): a convention, under which J is no
    bound for that step. objective: 'girsanov' (the bound); the others are refused (the step corrects exactly the
    total rate that 'destination' leaves out)."""
    kernel = process.kernel
    if kernel.mask is None:
        raise ValueError("the θ-trapezoidal step's J (jys.rule=sampler) is derived for absorbing kernels only; under "
                         "uniform and ordinal kernels its extrapolation pairs rates of different states (use jys.rule=none)")
    if objective != "girsanov":
        raise ValueError(f"the θ-trapezoidal step's J is the Girsanov path KL of its two leaps; got jys.objective="
                         f"{objective!r} (leave it at auto, or set girsanov)")
    a1, a2 = trapezoid_weights(theta)
    M = mid.x.shape[0]
    S = process.num_states
    out = torch.zeros(len(fines), M, dtype=F64)
    masked = mid.x == kernel.mask
    masked[:, :first] = False
    b, l = torch.nonzero(masked, as_tuple=True)
    step = max(1, CHUNK_BYTES // (8 * S * 8))
    tm, tp = mid.t.to(F64), start.t.to(F64)
    for i in range(0, b.numel(), step):
        bi, li = b[i:i + step], l[i:i + step]
        xm, xp = mid.x[bi, li].unsqueeze(1), start.x[bi, li].unsqueeze(1)  # [n, 1]
        Rm = rates_from_ratios(mid.log_ratio[bi, li].unsqueeze(1).to(F64).exp(), xm, tm[bi], process)
        Rp = rates_from_ratios(start.log_ratio[bi, li].unsqueeze(1).to(F64).exp(), xp, tp[bi], process)
        lam = a1 * Rm - a2 * Rp
        lam = torch.where(lam > 0, lam, Rm)
        for k, fine in enumerate(fines):
            x2c, t2 = fine.x[bi, li].unsqueeze(1), fine.t.to(F64)[bi]
            r2 = concrete_ratios(ModelOutput("score", fine.log_ratio[bi, li].unsqueeze(1)), x2c, t2, process)
            out[k].index_add_(0, bi, _chunk_terms(process, None, None, xm, tm[bi], r2, x2c, t2, objective, "start",
                                                  R1=lam))
    return out


STEP_RULES = ("none", "euler", "tau_leaping", "tau_leaping_last", "tweedie")


def _ordinal_leap_law(lam: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """τ-leaping's one-step law under an ordinal kernel [b, l, S]: x + D clamped to [0, S − 1], D = Σ_d d·N_d with
    N_d ~ Poisson(λ_d) independent (lam [b, l, S]: the step's intensities to each state, its length folded in).
    D's law from its characteristic function exp(Σ_d λ_d (e^{iωd} − 1)) on an FFT grid, centred on round(E D) so
    that no mass wraps around (the grid spans ±6 standard deviations and the state space); the clamped ends take
    the tails' sums."""
    S = lam.shape[-1]
    lam_d = _marks(lam, x, True)  # [b, l, 2S − 1], d = −(S − 1) … S − 1
    d = torch.arange(-(S - 1), S, dtype=F64)
    mean, var = (lam_d * d).sum(-1), (lam_d * d * d).sum(-1)
    m = mean.round()
    N = 1 << max(6, math.ceil(math.log2(12 * math.sqrt(float(var.max())) + 4 * S + 1)))
    w = 2 * math.pi * torch.arange(N, dtype=F64) / N
    E = torch.polar(torch.ones(2 * S - 1, N, dtype=F64), d[:, None] * w[None, :]) - 1  # e^{iωd} − 1 [2S − 1, N]
    log_phi = lam_d.to(torch.complex128) @ E - 1j * m.unsqueeze(-1).to(torch.complex128) * w  # [b, l, N]
    p = (torch.fft.fft(torch.exp(log_phi)).real / N).clamp_min(0.0)  # P(D − m = j) at j mod N (φ = E e^{iωD})
    p = torch.roll(p, N // 2, dims=-1)  # index j + N/2 for j = −N/2 … N/2 − 1
    cdf = p.cumsum(-1)
    k = torch.arange(S)
    j = (k - x.unsqueeze(-1) - m.long().unsqueeze(-1))  # D − m that lands on state k [b, l, S]
    inside = (j >= -(N // 2)) & (j < N // 2)
    idx = (j + N // 2).clamp(0, N - 1)
    q = torch.where(inside, p.gather(-1, idx), 0.0)
    low = torch.where(j[..., 0] < -(N // 2), 0.0, torch.where(j[..., 0] >= N // 2, 1.0, cdf.gather(-1, idx[..., :1]).squeeze(-1)))
    top = (j[..., -1:] + N // 2 - 1).clamp(0, N - 1)  # the CDF just below the top state
    below_top = torch.where(j[..., -1] <= -(N // 2), 0.0,
                            torch.where(j[..., -1] > N // 2, 1.0, cdf.gather(-1, top).squeeze(-1)))
    q[..., 0], q[..., -1] = low, (1.0 - below_top).clamp_min(0.0)
    return q


def _step_law(process, ratio1: torch.Tensor, x1: torch.Tensor, t1: torch.Tensor, s: torch.Tensor, rule: str,
              context1: torch.Tensor | None = None):
    """(q, P) per position [b, l, S]: the sampler's one-step law from (x_{t1}, t1) to s, and the exact one-step
    marginal given x_{t1} (the Tweedie step's law, normalized)."""
    kernel = process.kernel
    dsig = process.sigma(t1) - process.sigma(s)
    P = (carried(process, ratio1, context1, t1, s) * kernel.transition_cols(x1, dsig)).clamp_min(0.0)
    P = P / P.sum(-1, keepdim=True)
    h = (t1 - s).reshape(-1, 1, 1)
    R = rates_from_ratios(ratio1, x1, t1, process)
    lam = h * R
    total = lam.sum(-1, keepdim=True)
    if rule == "euler":  # stay takes the rest, clipped at 0; the draw normalizes
        q = lam.scatter(-1, x1.unsqueeze(-1), (1 - total).clamp_min(0.0))
    elif kernel.ordinal and rule in ("tau_leaping", "tau_leaping_last"):  # moves summed and clamped; no multi-jump rule
        q = _ordinal_leap_law(lam, x1)
    elif rule in ("tau_leaping", "tau_leaping_last"):  # N ~ Poisson(Λ) jumps to a destination ∝ λ
        pi = torch.where(total > 0, lam / torch.where(total > 0, total, 1.0), 0.0)
        move = total * torch.exp(-total) if rule == "tau_leaping" else -torch.expm1(-total)  # reject: N = 1 only
        q = (move * pi).scatter(-1, x1.unsqueeze(-1), 1 - move)
    else:
        q = P
    return q / q.sum(-1, keepdim=True), P


def step_terms(process, coarse: Coarse, s: torch.Tensor, rule: str, first: int = 0, reach: bool = False,
               stay: bool = False, marginal: bool = False):
    """Σ_{l >= first} KL(q_l ‖ P_l) per sequence for the step t1 → s: how far the sampler's one-step law of each
    token lies from the exact one (given x_{t1}). With the frozen-denoiser path KL (coarse_state='denoiser'), which
    bounds the part every factorized step shares (the tokens' dependence), it makes the step's divergence:
    KL(p(x_s | x_t) ‖ Π_l q_l) = KL(p ‖ Π_l P_l) + Σ_l KL(P_l ‖ q_l) exactly (here in the sampler's direction,
    finite where Euler's clipped step stays nowhere). 0 for 'tweedie' and 'none'. [M] float64

    reach: instead, the KL of each law's image in the token's sample x0_l, the steps after s exact and the other
    tokens as in x_{t1}: Σ_y q_l(y) p(x0_l | x_{s,l} = y, context) against the same of P_l, where p(x0_l | y,
    context) ∝ p(x0_l | x_{t1,−l}) · P_s[x0_l, y]. Why the image of one token suffices: the sample's law given x_s
    is the data's reweighted by Π_k P_s[x0_k, x_{s,k}], so a token's value at s moves the whole sample by what it
    moves x0_l; here the other tokens' evidence is read at t1, not s (the frozen context of the denoiser path), so
    for L > 1 it is that approximation, not exact. Never above the plain term (data processing: one channel applied
    to both laws); 0 where the kernel has mixed (every y the same image), so a sampler's error at large t, which the
    path KL counts in full, costs what still reaches the sample.

    marginal: instead, the KL of the two laws of x_{s,l} given the context alone, each averaged over the token's own
    value x at t1 with its law given the context, w(x) = Σ_x0 p(x0_l | x_{t1,−l}) P_t1[x0_l, x]: Σ_x w(x) q_l(· | x)
    against Σ_x w(x) P_l(· | x) (the latter is the context's law at s). The idea: the later steps read x_{t1,l}
    mainly through x_{s,l}, so how well q reproduces the dependence of x_{s,l} on x_{t1,l} matters less than the
    token's law; the plain term counts that dependence in full, e.g. Euler's clipped stay at large t (every token
    moved though its value is noise either way). It is a heuristic, not a term of an exact decomposition: in a
    factorized step the other tokens' laws read x_{t1,l} too, so x_{s,−l} still carries it, and the true law given
    the context is a mixture of products where this compares a product of mixtures; J with it bounds nothing.
    q_l(· | x) takes the rates of a consistent model at the own value x, dσ̄/dt · Q[y, x] w(y) / w(x) (the exact
    ratios given the context); the oracle's and a denoiser's are. At most the plain term on average over x_{t1,l}
    drawn from w (convexity; not per sequence); 0 where the steps forget their start; under the uniform kernel with
    loglinear noise (1 + h·dσ̄/dt = e^{Δσ̄}) Euler's averaged law is the exact one wherever no stay is clipped, so
    there it measures the clipping alone.

    stay: also return the step's keep probability, q_l(x_{t1,l}) averaged over the positions l >= first, per
    sequence [M] (weight=suffix: the chance that a later step of the sampler leaves an error made before it in
    place)."""
    if rule not in STEP_RULES:
        raise ValueError(f"unknown step rule {rule!r}; expected one of {STEP_RULES}")
    M, L = coarse.x.shape
    out, kept = torch.zeros(M, dtype=F64), torch.zeros(M, dtype=F64)
    if rule in ("none", "tweedie"):
        return (out, kept + 1.0) if stay else out
    if marginal and (reach or stay):
        raise ValueError("the marginal step term is not combined with reach or stay (its averaged law keeps nothing)")
    name = "reach (or mix)" if reach else "marginal"
    if (reach or marginal) and process.kernel.mask is not None:
        raise ValueError(f"jys.weight={name} is for non-absorbing kernels (an unmasked token is already its sample)")
    if (reach or marginal) and coarse.log_context is None:
        raise ValueError(f"jys.weight={name} needs a model that gives a denoiser p(x0 | x_t) (the context posterior "
                         "carries a token's value at s to its sample); this one gives scores")
    if process.kernel.ordinal and coarse.log_context is None:
        raise ValueError(f"the step rule term {rule!r} under an ordinal kernel needs a model that gives a denoiser (the "
                         f"step's exact law is carried from p(x0 | context)); this one gives scores")
    S = process.num_states
    t1 = coarse.t.to(F64)
    s = torch.as_tensor(s, dtype=F64).expand(M)
    step = max(1, CHUNK_BYTES // (M * S * 8 * (4 * S if marginal and process.kernel.ordinal else 4)))  # [M, l, S, S]
    for i in range(first, L, step):
        sl = slice(i, i + step)
        context = coarse.context(slice(None), sl)
        if marginal:
            q, P = _marginal_step_laws(process, context, t1, s, rule)
        else:
            q, P = _step_law(process, coarse.log_ratio[:, sl].to(F64).exp(), coarse.x[:, sl], t1, s, rule, context)
        if stay:
            kept += q.gather(-1, coarse.x[:, sl].unsqueeze(-1)).squeeze(-1).sum(1)
        if reach:
            q, P = _image_in_x0(process, context, s, q), _image_in_x0(process, context, s, P)
        pos = q > 0
        out += torch.where(pos, q * (torch.log(torch.where(pos, q, 1.0)) - torch.log(P.clamp_min(1e-300))), 0.0).sum((1, 2))
    return (out, kept / max(1, L - first)) if stay else out


def _marginal_step_laws(process, context: torch.Tensor, t1: torch.Tensor, s: torch.Tensor, rule: str):
    """(Σ_x w(x) q(· | x), Σ_x w(x) P(· | x)) [b, l, S]: the sampler's and the exact one-step laws averaged over the
    token's own value x at t1, w its law given the context (step_terms, `marginal`). The exact one is the context's
    law at s (Σ_x w(x) P(y | x) = m_s(y) Σ_x P_{t1−s}[y, x] = m_s(y), as m_s carried to t1 is w); the sampler's
    is built for every x at once from the rates dσ̄/dt · Q[y, x] w(y) / w(x) ([b, l, S, S]), except τ-leaping under
    an ordinal kernel (its law needs one FFT per x)."""
    b, l, _ = context.shape
    S = process.num_states
    m_s = carried(process, None, context, t1, s).clamp_min(0.0)
    P_bar = m_s / m_s.sum(-1, keepdim=True).clamp_min(1e-300)
    w = carried(process, None, context, t1, t1).clamp_min(0.0)
    w = w / w.sum(-1, keepdim=True).clamp_min(1e-300)
    if rule in ("tau_leaping", "tau_leaping_last") and process.kernel.ordinal:
        q_bar = torch.zeros_like(w)
        for x in range(S):
            wx = w[..., x:x + 1]
            ratio = torch.where(wx > 0, w / torch.where(wx > 0, wx, 1.0), 0.0)
            q, _ = _step_law(process, ratio, torch.full((b, l), x, dtype=torch.long), t1, s, rule, context)
            q_bar += torch.where(wx > 0, wx * q, 0.0)
        return q_bar, P_bar
    own = torch.arange(S)
    Qt = process.kernel.rate_cols(own.reshape(1, S))[0].to(F64)  # [x, y] = Q[y, x], the forward rate y → x
    off = Qt[~torch.eye(S, dtype=torch.bool)]
    if rule in ("euler", "tau_leaping", "tau_leaping_last") and not process.kernel.ordinal and bool((off == off[0]).all()):
        # the uniform kernel: q(y | x) = m_x w(y) for y ≠ x, so the average over x is O(S) per token
        rate = ((t1 - s) * process.sigma_rate(t1)).reshape(-1, 1, 1) * off[0]
        alpha = torch.where(w > 0, rate / torch.where(w > 0, w, 1.0), 0.0)  # λ(x → y) = α_x w(y)
        total = alpha * (1 - w)
        if rule == "euler":  # the stay clipped at 0, then the row normalized by max(1, total)
            Z = total.clamp_min(1.0)
            m, keep = alpha / Z, (1 - total).clamp_min(0.0) / Z
        else:  # a move with probability Λe^{−Λ} (reject) or 1 − e^{−Λ} (last), to y ∝ w(y) over y ≠ x
            move = total * torch.exp(-total) if rule == "tau_leaping" else -torch.expm1(-total)
            m = torch.where(w < 1, move / (1 - w).clamp_min(1e-300), 0.0)
            keep = 1 - move
        A = (w * m).sum(-1, keepdim=True)
        q_bar = w * (A - w * m) + w * keep
        return q_bar / q_bar.sum(-1, keepdim=True), P_bar
    h = ((t1 - s) * process.sigma_rate(t1)).reshape(-1, 1, 1, 1)
    wx = w.unsqueeze(-1)  # [b, l, x, 1]
    eye = torch.eye(S, dtype=F64)
    lam = torch.where(wx > 0, h * Qt * w.unsqueeze(-2) / torch.where(wx > 0, wx, 1.0), 0.0) * (1 - eye)  # [b, l, x, y]
    total = lam.sum(-1, keepdim=True)
    if rule == "euler":
        q = lam + eye * (1 - total).clamp_min(0.0)
    elif rule in ("tau_leaping", "tau_leaping_last"):
        pi = torch.where(total > 0, lam / torch.where(total > 0, total, 1.0), 0.0)
        move = total * torch.exp(-total) if rule == "tau_leaping" else -torch.expm1(-total)
        q = move * pi + eye * (1 - move)
    else:
        raise ValueError(f"the marginal step term has no law for the step rule {rule!r}")
    q = q / q.sum(-1, keepdim=True)
    return (w.unsqueeze(-1) * q).sum(-2), P_bar


def _image_in_x0(process, context: torch.Tensor, s: torch.Tensor, law: torch.Tensor) -> torch.Tensor:
    """Σ_y law(y) p(x0 | y, context) [b, l, S0], p(x0 | y, context) = c(x0) P_s[x0, y] / Σ_x0' c(x0') P_s[x0', y]
    (c the context posterior [b, l, S0], law [b, l, S] over x_{s,l})."""
    if not bool((s == s[0]).all()):
        raise ValueError("the image of a step in x0 is computed for one landing time s shared by the sequences")
    K = process.kernel.transition(process.sigma(s[:1]))[0, : process.data_states]  # [S0, S]
    Z = context @ K  # [b, l, S]: p(x_{s,l} = y | context)
    supported = Z > 0
    image = context * ((torch.where(supported, law / torch.where(supported, Z, 1.0), 0.0)) @ K.T)
    # a value the context gives no support (Z underflows): its posterior is the likelihood P_s[·, y] alone, so its
    # mass is kept, not dropped by the normalization
    columns = K.sum(0)  # [S]
    image = image + (torch.where(supported, 0.0, law) / torch.where(columns > 0, columns, 1.0)) @ K.T
    return image / image.sum(-1, keepdim=True).clamp_min(1e-300)


def resolve_coarse_state(coarse_state: str, kernel, has_context: bool = False) -> str:
    """auto: 'start' for absorbing kernels (where 'denoiser' gives the same rates to a masked token), 'denoiser' for
    uniform ones and for ordinal ones whose model gives a denoiser (has_context: the read kept p(x0 | context)),
    'current' for ordinal ones that give scores (their carried marginal would need expm(+ΔσQ))
    (docs/method.md; the ablation in docs/results/jys.md, "Ablations")."""
    check_coarse_state(coarse_state)
    if coarse_state == "auto":
        return "start" if kernel.mask is not None else "current" if kernel.ordinal and not has_context else "denoiser"
    if coarse_state == "denoiser" and kernel.ordinal and not has_context:
        raise ValueError("jys.coarse_state=denoiser under an ordinal kernel needs a model that gives a denoiser "
                         "p(x0 | x_t) (this one gives scores); use jys.coarse_state=current")
    return coarse_state


def check_coarse_state(coarse_state: str) -> None:
    if coarse_state not in COARSE_STATES:
        raise ValueError(f"unknown jys.coarse_state {coarse_state!r}; expected one of {COARSE_STATES}")


def resolve_objective(objective: str, kernel) -> str:
    """auto: 'destination' for absorbing kernels (their samplers time the unmasking exactly, so only where tokens
    land reaches the samples), 'girsanov' for the others (τ-leaping's frozen rates mistime the jumps too)."""
    check_objective(objective)
    if objective == "auto":
        return "destination" if kernel.mask is not None else "girsanov"
    return objective


def check_objective(objective: str) -> None:
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown JYS objective {objective!r}; expected one of {OBJECTIVES}")
