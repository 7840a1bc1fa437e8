"""How likely the model itself finds a sampler's output: the samples' negative ELBO per token under the model.

    python scripts/model_nll.py experiment=text model=text-sedd --samples FILE.npz [FILE.npz ...] [--heldout 48]
        [--times 64] [--seed 0] [--out PATH]

A grid chosen by JYS on a trained model minimizes a bound on the KL of the sampler's output from the model's own
continuous-time process, not from the data; a judge (generative perplexity under another LM) scores the samples
against neither. This scores them under the model itself: for each sample x0 the denoising score entropy that SEDD
trains on, with s the model's concrete ratios (a score model's, or a denoiser's through the kernel),

    ∫_0^1 E_{x_t ~ p_t(· | x0)} dσ̄/dt · Σ_l Σ_{y ≠ x_l} Q[y, x_l] (s_y − r_y log s_y + r_y (log r_y − 1)) dt,

an upper bound on −log p_model(x0) up to the prior's term KL(p_1(· | x0) ‖ p_1) (left out, as SEDD leaves it out:
under an absorbing kernel about e^{−σ̄(1)} times a token's NLL, per token), and −log p(x0) itself for the exact ratios
with that term added (tested on the oracle). Monte Carlo over `--times` stratified times per sequence, with common
random numbers between files of equal size (the same times and forward draws for sequence i of each), so their
differences carry less noise than their values. Like chain NLL on the
oracles it is a cross-entropy: it mixes the samples' entropy with their error (the token entropy is printed beside
it). `--heldout N` scores N disjoint held-out windows too (the model's held-out loss, a check of the estimate).
Prints a table and each sample file's difference from the first of the same size, paired by sequence index (files of
one sampling seed share their random streams, and the scores their times), and writes a JSON record (default
runs/<experiment>/<model>/model-nll.json). `--paired RECORD` prints those differences from a record again.
"""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import torch

from common.io import atomic_write_json
from metrics.text import token_entropy
from models.protocol import concrete_ratios
from pipeline.build import build_model, compose_config, setup_torch
from pipeline.experiment import experiment_of
from train.losses import score_entropy

ROOT = Path(__file__).resolve().parents[1]
F64 = torch.float64


def negative_elbo(model, x0: torch.Tensor, times: int, seed: int, batch_size: int) -> torch.Tensor:
    """The score-entropy bound per token of each sequence [N] float64 (docstring above)."""
    process = model.process
    N, L = x0.shape
    out = torch.zeros(N, dtype=F64)
    for k in range(times):
        g = torch.Generator().manual_seed(seed * 1_000_003 + k)  # stratum k: the same for every file
        t = ((k + torch.rand(N, generator=g, dtype=F64)) / times).clamp(1e-5, 1.0)
        x_t = process.sample(x0, t, g)
        for i in range(0, N, batch_size):
            sl = slice(i, i + batch_size)
            ratios = concrete_ratios(model(x_t[sl], t[sl]), x_t[sl], t[sl], process)  # scores, or from a denoiser
            out[sl] += score_entropy(ratios.clamp_min(1e-300).log(), x_t[sl], x0[sl], t[sl], process) / times
    return out / L


def paired(rows: dict) -> list[str]:
    """Each sample file's mean difference in model NLL from the first file of the same size, ± the standard error
    of the per-sequence differences (paired by index; held-out windows are not paired with samples)."""
    lines, first = [], {}
    for name, r in rows.items():
        if name == "heldout":
            continue
        base = first.setdefault(r["num"], name)
        if base != name:
            d = torch.tensor(r["per_sequence"], dtype=F64) - torch.tensor(rows[base]["per_sequence"], dtype=F64)
            m, se = float(d.mean()), float(d.std() / math.sqrt(len(d))) if len(d) > 1 else math.nan
            ratio = f" ({m / se:+.1f} s.e.)" if se > 0 else ""  # (nan > 0 is False: one sequence has no s.e.)
            lines.append(f"{name} − {base}: {m:+.4f} ± {se:.4f} paired{ratio}")
    return lines


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=Path, nargs="*", default=[], help="sample files (.npz, key 'samples')")
    p.add_argument("--heldout", type=int, default=0, help="also score this many disjoint held-out windows")
    p.add_argument("--times", type=int, default=64, help="stratified times per sequence")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--paired", type=Path, default=None, metavar="RECORD",
                   help="print a record's paired differences and exit (nothing scored)")
    a, overrides = p.parse_known_args(argv)
    if a.paired:
        print("\n".join(paired(json.loads(a.paired.read_text())["rows"])))
        return a.paired
    if not a.samples and not a.heldout:
        raise SystemExit("nothing to score: give --samples FILE ... and/or --heldout N")
    cfg = compose_config([*overrides, "progress=false"])
    setup_torch(cfg)
    model = build_model(cfg)
    L = int(cfg.experiment.length)
    sets: dict[str, torch.Tensor] = {}
    if a.heldout:
        sets["heldout"] = experiment_of(cfg).heldout_windows(a.heldout, a.seed)
        if len(sets["heldout"]) < a.heldout:
            raise SystemExit(f"--heldout {a.heldout}: the valid split holds {len(sets['heldout'])} disjoint windows "
                             f"of {L} tokens")
    for f in a.samples:
        x = torch.as_tensor(np.load(f)["samples"], dtype=torch.long)
        if x.ndim != 2 or x.shape[1] != L:
            raise SystemExit(f"{f}: samples of shape {tuple(x.shape)}, expected [N, {L}]")
        if x.min() < 0 or x.max() >= model.process.data_states:
            raise SystemExit(f"{f}: tokens in [{int(x.min())}, {int(x.max())}], expected data states "
                             f"[0, {model.process.data_states}) (a sample with a mask left in it has no likelihood)")
        sets[str(f)] = x
    rows = {}
    for name, x in sets.items():
        per = negative_elbo(model, x, a.times, a.seed, a.batch_size)
        rows[name] = {"num": len(per), "model_nll": float(per.mean()), "model_nll_se": float(per.std() / math.sqrt(len(per))),
                      "entropy": token_entropy(x), "per_sequence": per.tolist()}
        print(f"{name}: model NLL {rows[name]['model_nll']:.4f} ± {rows[name]['model_nll_se']:.4f} per token "
              f"(entropy {rows[name]['entropy']:.3f}; {len(per)} sequences)", flush=True)
    path = a.out or ROOT / cfg.runs_dir / cfg.experiment.name / cfg.model.name / "model-nll.json"
    atomic_write_json(path, {"experiment": cfg.experiment.name, "model": model.identity(), "times": a.times,
                             "seed": a.seed, "overrides": overrides, "rows": rows})
    print("\n".join(paired(rows)))
    print(f"-> {path}")
    return path


if __name__ == "__main__":
    main()
