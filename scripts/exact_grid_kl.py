"""J against the exact divergence of a sampler's output law, on a chain small enough to enumerate.

    python scripts/exact_grid_kl.py [--states 4] [--length 5] [--calls 4 8 16] [--kernel uniform] [--sigma 6]
        [--chain countdown|dirichlet] [--sampler euler|tau_leaping] [--weight none|survival|reach|suffix|mix|marginal]
        [--rule sampler|none] [--klub-samples 2048] [--out FILE]

Every oracle table elsewhere judges a grid by its samples (chain NLL, bigram TV): statistics of a few hundred
sequences. Here the data law is a chain over S states and L tokens (S^L ≤ 4,096 sequences: CountDown, or a chain with
Dirichlet(0.3) rows), so the law of the sampler's output on any grid is computed exactly (samplers/exact_law.py: Euler
or τ-leaping, then the noise-removal draw, sample or argmax). Each grid (uniform, cosine, the power grids, J's lattice
optimum) gets J ± s.e. (jys.lattice, as python -m jys computes it for uniform kernels) beside the exact KL(data ‖
samples), KL(samples ‖ data), TV, chain NLL and bigram TV of its output law, and Spearman's ρ between J and each:
whether J ranks grids as the exact divergence does, with no sampling noise in the judge. Under the final argmax the
output law is 0 where the data is not, and the KLs are computed with that 0 clamped to 1e-300 (read the TV there).
"""
from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from common.io import atomic_write_json
from jys.lattice import WEIGHTS, PathLattice, base_lattice, lattice_size, optimal_grids
from models.chains import MarkovChain, countdown_chain
from models.kernels import make_kernel
from models.noise import Constant
from models.oracle import OracleModel
from models.process import ForwardProcess
from results.exact import record_path
from samplers.exact_law import sampler_law
from samplers.registry import steps_for_calls
from samplers.schedules import POWERS, cosine, power, uniform

ROOT = Path(__file__).resolve().parents[1]
F64 = torch.float64


def bigram(law: torch.Tensor, states: torch.Tensor, S: int) -> torch.Tensor:
    """Position-pooled bigram law of a law over sequences. [S, S]"""
    L = states.shape[1]
    B = torch.zeros(S * S, dtype=F64)
    for l in range(L - 1):
        B.index_add_(0, states[:, l] * S + states[:, l + 1], law)
    return (B / (L - 1)).reshape(S, S)


def judge(law: torch.Tensor, truth: torch.Tensor, states: torch.Tensor, S: int) -> dict:
    L = states.shape[1]
    pos_t, pos_q = truth > 0, law > 0
    return {"kl_data_samples": float((truth[pos_t] * (truth[pos_t] / law[pos_t].clamp_min(1e-300)).log()).sum()),
            "kl_samples_data": float((law[pos_q] * (law[pos_q] / truth[pos_q].clamp_min(1e-300)).log()).sum()),
            "tv": float(0.5 * (law - truth).abs().sum()),
            "chain_nll": float(-(law * truth.clamp_min(1e-300).log()).sum() / L),
            "bigram_tv": float(0.5 * (bigram(law, states, S) - bigram(truth, states, S)).abs().sum())}


def make_chain(name: str, S: int) -> MarkovChain:
    """countdown: CountDown over S states (a countdown to 0, then a uniform restart); dirichlet: a chain whose
    initial law and rows are drawn from Dirichlet(0.3) (seed 0), a generic skewed chain."""
    if name == "countdown":
        return countdown_chain(S)
    w = torch.from_numpy(np.random.default_rng(0).gamma(0.3, size=(S + 1, S)))
    return MarkovChain(w[0] / w[0].sum(), w[1:] / w[1:].sum(-1, keepdim=True))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chain", default="countdown", choices=["countdown", "dirichlet"])
    p.add_argument("--sampler", default="euler", choices=["euler", "tau_leaping"])
    p.add_argument("--states", type=int, default=4)
    p.add_argument("--length", type=int, default=5)
    p.add_argument("--calls", type=int, nargs="+", default=[4, 8, 16])
    p.add_argument("--kernel", default="uniform", choices=["uniform"])
    p.add_argument("--sigma", type=float, default=6.0, help="the constant-rate noise's σ̄(1) (count_uniform_const's)")
    p.add_argument("--eps", type=float, default=1e-3)
    p.add_argument("--floor", type=float, default=1e-3)
    p.add_argument("--klub-samples", type=int, default=2048)
    p.add_argument("--lattice", type=int, default=32)
    p.add_argument("--weight", default="none", choices=list(WEIGHTS))
    p.add_argument("--rule", default="sampler", choices=["sampler", "none"], help="J's one-step term: the "
                   "sampler's (the default for uniform kernels), or none (the frozen-denoiser path KL alone)")
    p.add_argument("--final", default="sample", choices=["sample", "argmax"])
    p.add_argument("--out", type=Path, default=None, help="default runs/exact/<chain>-<sampler>-<variant>.json (the "
                   "record that docs/records/exact/ keeps and results.exact tabulates)")
    a = p.parse_args()
    S, L = a.states, a.length
    if S ** L > 4096:
        raise SystemExit(f"S^L = {S ** L} sequences: the exact laws need S^L <= 4096 (the transition matrices are S^L × S^L)")
    chain = make_chain(a.chain, S)
    proc = ForwardProcess(Constant(a.sigma), make_kernel(a.kernel, S))
    model = OracleModel(chain, proc, floor=a.floor)
    states = torch.tensor(list(itertools.product(range(S), repeat=L)), dtype=torch.long)
    truth = model.chain.log_prob(states).exp()  # the oracle is exact for the chain mixed with its floor
    truth = truth / truth.sum()
    x0 = chain.sample(a.klub_samples, L, torch.Generator().manual_seed(0))
    rule = a.sampler if a.rule == "sampler" else "none"
    settings = {k: v for k, v in vars(a).items() if k != "out"}
    path = a.out or record_path(settings, ROOT / "runs" / "exact")
    out = {"settings": settings, "cells": {}}
    for calls in a.calls:
        steps = steps_for_calls(a.sampler, calls)  # the noise-removal draw is the last call
        grids = {"uniform": uniform(steps, a.eps).tolist(), "cosine": cosine(steps, a.eps).tolist()}
        grids.update({f"power{q:g}": power(steps, q, a.eps).tolist() for q in POWERS})
        base = base_lattice(lattice_size(a.lattice, steps), a.eps)
        reads: dict = {}  # model reads by point, shared by the grids' lattices on the base path

        def lattice(points):
            return PathLattice(model, x0, points, "tau", 1, "girsanov", "denoiser", a.weight, rule=rule,
                               base_points=lattice_size(a.lattice, steps), read_cache=reads)

        lat = lattice(base)
        idx, _ = optimal_grids(lat.table(), steps)[steps]
        grids["dp"] = [base[i] for i in idx]
        rows = {}
        for name, grid in grids.items():
            grid = [round(t, 12) for t in grid]
            points = sorted(set(grid) | set(base), reverse=True)
            jv = lattice(points).grid_value(grid)
            rows[name] = {"times": grid, "J": jv.value, "J_se": jv.se,
                          **judge(sampler_law(model, states, grid, a.sampler, a.final), truth, states, S)}
        metrics = [k for k in rows["uniform"] if k not in ("times", "J", "J_se")]
        rho = {m: float(spearmanr([r["J"] for r in rows.values()], [r[m] for r in rows.values()]).statistic)
               for m in metrics}
        out["cells"][str(calls)] = {"grids": rows, "spearman": rho}
        print(f"\n{calls} model calls ({steps} {a.sampler} steps + the noise-removal draw), {a.chain} S = {S}, L = {L}, weight {a.weight}, "
              f"rule {a.rule}")
        print(f"{'grid':>10}{'J':>10}{'± se':>8}" + "".join(f"{m:>17}" for m in metrics))
        for name, r in rows.items():
            print(f"{name:>10}{r['J']:>10.4g}{r['J_se']:>8.2g}" + "".join(f"{r[m]:>17.4f}" for m in metrics))
        print("Spearman(J, ·): " + ", ".join(f"{m} {v:.2f}" for m, v in rho.items()), flush=True)
    atomic_write_json(path, out)
    print(f"-> {path}")


if __name__ == "__main__":
    main()
