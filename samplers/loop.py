"""The one loop that drives every sampler over an explicit time grid, and counts model calls."""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from common.progress import progress as progress_bar
from models.protocol import denoised_probs
from samplers.registry import COUNT_GRID, NOISE_REMOVAL, check_prefix_support, check_sampler, spec
from samplers.schedules import check_grid, token_counts
from samplers.steps import (
    STEPS,
    position_chunks,
    positions,
    rows,
    sample_by_positions,
    sample_categorical,
    tau_leaping_step,
    trapezoidal_step,
)
from samplers.klass import KLASS, klass_sample
from samplers.remasking import ReMDM, remdm_step
from samplers.unmasking import CONFIDENCES, check_gamma, confidence_step, dus_step, eb_sample, is_permutation

F64 = torch.float64


class CountingModel:
    """Wraps a model and counts its calls (one call = one batch forward pass)."""

    def __init__(self, model):
        self.model = model
        self.process = model.process
        self.calls = 0

    def __call__(self, x, t):
        self.calls += 1
        return self.model(x, t)


@dataclass
class SampleResult:
    samples: torch.Tensor  # [N, L] long
    calls_per_batch: list[float]  # model calls of each batch (the NFE actually spent); EB: its sequences' mean
    sequence_calls: torch.Tensor | None = None  # EB-Sampler: the model calls each sequence took [N]

    @property
    def nfe(self) -> float:
        """Model calls per sequence."""
        if self.sequence_calls is not None:
            return float(self.sequence_calls.double().mean())
        return sum(self.calls_per_batch) / len(self.calls_per_batch)


def calls_per_sequence(sampler: str, steps: int, final_step: str = "sample") -> int:
    """NFE as every table counts it: model calls per sequence, the noise-removal call always counted
    (SEDD's NFE = steps + 1) even where a batch with no mask left skips it; the θ-trapezoidal step counts two. Count-grid
    samplers: their steps.
    (EB-Sampler has no grid: its calls are counted per sequence as it runs.)"""
    return steps * spec(sampler).calls_per_step + (1 if sampler in NOISE_REMOVAL and final_step != "none" else 0)


def check_prefix(prefix: torch.Tensor, num_samples: int, length: int, data_states: int) -> None:
    if prefix.ndim != 2 or prefix.shape[0] != num_samples or prefix.dtype.is_floating_point:
        raise ValueError(f"prefix must be integer tokens [num_samples={num_samples}, K], got {prefix.dtype} "
                         f"of shape {tuple(prefix.shape)}")
    if not 0 < prefix.shape[1] < length:
        raise ValueError(f"a prefix of {prefix.shape[1]} tokens: it must be shorter than the sequence ({length}) "
                         f"and not empty")
    if prefix.numel() and (prefix.min() < 0 or prefix.max() >= data_states):
        raise ValueError(f"prefix tokens in [{int(prefix.min())}, {int(prefix.max())}], expected data states "
                         f"[0, {data_states})")


def prior_sample(process, num: int, length: int, generator: torch.Generator) -> torch.Tensor:
    probs = process.kernel.prior_probs().expand(num, length, -1)
    return sample_categorical(probs, generator)


def denoise(model, x: torch.Tensor, t_end: float, generator: torch.Generator, mode: str = "sample") -> torch.Tensor:
    """The final noise-removal step at t_end: x_0 from p(x_0 | x_t). Absorbing: only masked tokens
    change, and the call is skipped when none is left."""
    mask = model.process.kernel.mask
    if mask is not None and not (x == mask).any():
        return x
    tb = torch.full((x.shape[0],), float(t_end), dtype=F64)
    out = model(x, tb)

    if mode == "argmax":
        x0 = torch.cat([denoised_probs(positions(out, sl), x[:, sl], tb, model.process).argmax(-1)
                        for sl in position_chunks(*x.shape, model.process.data_states)], dim=1)
    else:
        def probs(b, l):
            o, xs, ts = rows(out, x, t_end, b, l)
            return denoised_probs(o, xs, ts, model.process)[0]

        x0 = sample_by_positions(probs, x, model.process.data_states, generator, model.process.kernel.movable(x))
    return x0 if mask is None else torch.where(x == mask, x0, x)


def first_hitting(model, x: torch.Tensor, generator: torch.Generator, progress: bool = False) -> torch.Tensor:
    """Exact reverse simulation for absorbing kernels: one token per model call, L calls.

    With n masked tokens at time t, each unmasks independently with P(still masked at s) = m(s)/m(t),
    m = 1 − e^{−σ̄}; so the next jump time τ has m(τ) = m(t) U^{1/n}, its position is uniform among the
    masked ones, and its token follows the model's p(x_0,l | x) at τ.
    """
    proc = model.process
    mask = proc.kernel.mask
    B, L = x.shape
    t = torch.ones(B, dtype=F64)
    for n in progress_bar(range(int((x[0] == mask).sum()), 0, -1), desc="first hitting", leave=False,
                          enabled=progress):
        m = -torch.expm1(-proc.sigma(t)) * torch.rand(B, generator=generator, dtype=F64) ** (1.0 / n)
        t = proc.noise.inverse(-torch.log1p(-m))
        probs = denoised_probs(model(x, t), x, t, proc)  # [B, L, S0]
        keys = torch.rand(B, L, generator=generator, dtype=F64).masked_fill_(x != mask, -1.0)
        pos = keys.argmax(1, keepdim=True)  # [B, 1]
        row = probs.gather(1, pos.unsqueeze(-1).expand(-1, -1, probs.shape[-1]))
        x = x.scatter(1, pos, sample_categorical(row, generator))
    return x


def batch_seed(seed: int, k: int) -> int:
    """The generator seed of sampling batch k: the run's seed for the first batch, then one derived from
    (seed, k), so each batch is a stream of its own whichever process draws it."""
    if k == 0:
        return seed
    return int(np.random.SeedSequence([seed, k]).generate_state(1, np.uint64)[0] % 2**63)


def check_sizes(num_samples: int, batch_size: int) -> None:
    if num_samples < 1 or batch_size < 1:
        raise ValueError(f"need num_samples >= 1 and batch_size >= 1, got {num_samples} and {batch_size}")


def run_sampler(model, sampler: str, grid: torch.Tensor, num_samples: int, length: int,
                generator: torch.Generator | int, batch_size: int = 256, final_step: str = "sample",
                progress: bool = True, prefix: torch.Tensor | None = None,
                multi_jump: str = "reject", confidence: str = "max", gamma: float = 1.0,
                remdm: ReMDM | None = None, klass: KLASS | None = None,
                order: torch.Tensor | None = None, thetas: list[float] | None = None) -> SampleResult:
    """Draw num_samples sequences of the given length by `sampler` over the decreasing grid (t_0 = 1 … t_N = ε).

    generator: a seed draws batch k from its own stream, torch.Generator().manual_seed(batch_seed(seed, k)), as
    `python -m samplers` does on any number of processes (the same samples for the same seed and batch_size);
    a torch.Generator draws every batch from that one stream.

    final_step: 'sample' or 'argmax' (the noise-removal step at t_N), or 'none'.
    multi_jump: τ-leaping under a categorical kernel, a position with several jumps in one step:
    'reject' (stays) or 'last' (takes its last jump's destination); see samplers.steps.tau_leaping_step.
    prefix: conditional generation, [num_samples, K] data tokens that sample i starts with. They are in x
    from the start, the model sees them at every call, and no step changes them: every step here moves
    each position given the current x, so holding the first K positions is drawing the others from the
    reverse process conditioned on them.
    confidence: sampler=confidence's position score, 'max' or 'margin'; gamma: sampler=eb's entropy budget
    per call (eb takes no grid and stops when no mask is left; see samplers.unmasking); remdm: sampler=remdm's
    strategy and rates (samplers.remasking; default its 'loop' with the published values); klass: sampler=klass's
    thresholds (samplers.klass; the grid's counts are its minimum per call, and each sequence's calls are counted);
    order: sampler=dus's permutation of the positions [L] (None: DUS's dilated order).
    thetas: sampler=trapezoidal's θ of each step (None: ½ in every step); J's grids for it give their own.
    """
    check_sampler(sampler, model.process)
    if prefix is not None:
        check_prefix(prefix, num_samples, length, model.process.data_states)
        check_prefix_support(sampler)
    grid = check_grid(grid)
    check_sizes(num_samples, batch_size)
    if final_step not in ("sample", "argmax", "none"):
        raise ValueError(f"final_step {final_step!r}; expected 'sample', 'argmax' or 'none'")
    if sampler in COUNT_GRID:
        token_counts(grid, model.process, length)  # fail before any model call on a grid it cannot follow
    if sampler == "confidence" and confidence not in CONFIDENCES:
        raise ValueError(f"unknown unmask.confidence {confidence!r}; expected one of {CONFIDENCES}")
    if sampler == "eb":
        check_gamma(gamma)
    if order is not None and (sampler != "dus" or not is_permutation(order, length)):
        raise ValueError(f"an order of positions is for sampler=dus, a permutation of the {length} positions; got "
                         f"sampler={sampler} and {len(order)} positions")
    if thetas is not None and (sampler != "trapezoidal" or len(thetas) != len(grid) - 1
                               or not all(0.0 < float(v) < 1.0 for v in thetas)):
        raise ValueError(f"thetas are the θ in (0, 1) of each of the {len(grid) - 1} steps of sampler=trapezoidal; got "
                         f"{len(thetas)} values {list(thetas)[:4]} for sampler={sampler}")
    steps = {**STEPS, "tau_leaping": partial(tau_leaping_step, multi_jump=multi_jump),
             "trapezoidal": partial(trapezoidal_step, multi_jump=multi_jump),
             "confidence": partial(confidence_step, confidence=confidence), "dus": partial(dus_step, order=order),
             "remdm": partial(remdm_step, remdm=remdm or ReMDM())}
    counter = CountingModel(model)
    chunks, calls, per_sequence = [], [], []
    times = grid.tolist()
    n_batches = -(-num_samples // batch_size)
    bar = progress_bar(total=n_batches * (len(times) - 1), desc=f"{sampler} sampling", enabled=progress)
    seed = None if isinstance(generator, torch.Generator) else int(generator)
    for k, start in enumerate(range(0, num_samples, batch_size)):
        counter.calls = 0
        if seed is not None:
            generator = torch.Generator().manual_seed(batch_seed(seed, k))
        x = prior_sample(model.process, min(batch_size, num_samples - start), length, generator)
        given = None if prefix is None else prefix[start:start + x.shape[0]]

        def held(x):  # the prefix back in place: positions < K never change
            return x if given is None else torch.cat([given, x[:, given.shape[1]:]], dim=1)

        x = held(x)
        if sampler == "first_hitting":
            x = first_hitting(counter, x, generator, progress)
            bar.update(len(times) - 1)
        elif sampler == "eb":
            x, taken = eb_sample(counter, x, generator, gamma)  # the prefix is unmasked: never revealed again
            per_sequence.append(taken)
            bar.update(len(times) - 1)
        elif sampler == "klass":
            x, taken = klass_sample(counter, x, generator, token_counts(grid, model.process, length), klass or KLASS())
            per_sequence.append(taken)
            bar.update(len(times) - 1)
        else:
            for i, (t, s) in enumerate(zip(times[:-1], times[1:])):
                extra = {"hold": held} if sampler == "trapezoidal" else {}  # its midpoint call sees the prefix
                if thetas is not None:
                    extra["theta"] = float(thetas[i])
                x = held(steps[sampler](counter, x, t, s, generator, **extra))
                bar.update(1)
            if final_step != "none" and sampler not in COUNT_GRID:
                x = held(denoise(counter, x, times[-1], generator, final_step))
        chunks.append(x)
        calls.append(float(per_sequence[-1].double().mean()) if sampler in ("eb", "klass") else counter.calls)
    bar.close()
    return SampleResult(torch.cat(chunks), calls, torch.cat(per_sequence) if per_sequence else None)
