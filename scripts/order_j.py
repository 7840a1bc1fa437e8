"""J of DUS count grids in both directions, on the data's states or the model's own, with paired standard errors.

    python scripts/order_j.py experiment=text model=text-sedd --grids geometric:8 jys:FILE counts:0,16,32,...,128
        [--states data|model|own --samples NAME=FILE.npz ...] [--num 64] [--seed 1] [--batch-size 64] [--out PATH]

JYS's J for DUS (jys/order.py) reads each step on the data's sequences standing for the refined path's states, in
the refined path's direction: D(k, k′) = Σ_j KL(p(x_{o_j} | X_j) ‖ p(x_{o_j} | X_k)). On the sequences of the model's
own law (`--states model`: DUS revealing one token per call in its dilated order, the refined path itself) that J is
exactly KL(refined ‖ grid) of the grid's output, per sequence; `sampler_order_terms` reads each step in the other
direction, KL(coarse step ‖ refined) on the coarse step's own tokens, what a sample's cross-entropy pays; read on a
grid's own output (`--states own`, each grid's samples file given by --samples NAME=FILE.npz; J's direction is not
read there), their sum over the grid's steps is exactly KL(grid output ‖ refined). This prints both for each named
grid, each grid's difference from the first, paired by sequence where every grid reads the same sequences (data, model: the sampler's direction then
draws the same uniforms per slot too; own: unpaired, the grids' samples differ) and each step's mean, and writes them
to a JSON record.

Grids: geometric:N (DUS's levels, samplers.schedules.geometric_counts), counts:k_0,…,k_N, or a schedule file
(jys:FILE; its times as unmasked counts), optionally named NAME=GRID.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from common.io import atomic_write_json
from jys.order import order_terms, refined_draw, sampler_order_terms
from pipeline.build import build_model, compose_config, model_identity, setup_torch
from pipeline.experiment import experiment_of
from samplers.schedules import geometric_counts, times_from_counts, token_counts
from samplers.unmasking import dilated_order

ROOT = Path(__file__).resolve().parents[1]
F64 = torch.float64


def parse_grid(spec: str, length: int, process) -> tuple[str, list[int]]:
    """NAME=GRID or GRID (named by itself) → (name, counts 0 … L)."""
    name, _, grid = spec.rpartition("=")
    kind, _, arg = grid.partition(":")
    if kind == "geometric":
        counts = geometric_counts(int(arg), length)
    elif kind == "counts":
        counts = [int(v) for v in arg.split(",")]
    elif kind == "jys":
        times = torch.tensor(json.loads(Path(arg).read_text())["times"], dtype=F64)
        counts = token_counts(times, process, length)
    else:
        raise ValueError(f"unknown grid {spec!r}; expected geometric:N, counts:k0,...,kN or jys:FILE")
    if counts[0] != 0 or counts[-1] != length or any(b <= a for a, b in zip(counts, counts[1:])):
        raise ValueError(f"grid {spec!r}: counts must rise strictly from 0 to {length}, got {counts}")
    return name or grid.split("/")[-1], counts


def own_samples(path: Path, model, length: int, num: int, counts: list[int]) -> torch.Tensor:
    """The first `num` samples of a samples file, checked to be DUS's output on these counts from this model."""
    z = np.load(path)
    x = torch.as_tensor(z["samples"]).long()
    if x.dim() != 2 or x.shape[1] != length or len(x) < num:
        raise ValueError(f"{path}: expected at least {num} samples of length {length}, got shape {list(x.shape)}")
    times = times_from_counts(counts, model.process, length)
    if str(z["sampler"]) != "dus" or int(z["prefix"]) != 0 or z["times"].shape != tuple(times.shape) or \
            not np.allclose(z["times"], times.numpy(), rtol=0, atol=1e-12):
        raise ValueError(f"{path}: not DUS on the counts {counts} (sampler {z['sampler']}, prefix {z['prefix']}, "
                         f"times {np.round(z['times'], 4).tolist()})")
    if json.loads(str(z["model_identity"])) != model_identity(model):
        raise ValueError(f"{path}: drawn by another model ({z['model_identity']}), not {model_identity(model)}")
    return x[:num]


def states(model, experiment, kind: str, num: int, seed: int, batch_size: int, samples: Path | None = None,
           counts: list[int] | None = None) -> torch.Tensor:
    """The sequences steps are read on: the data's, the model's own law in DUS's order (one token per call), or the
    first `num` of a grid's samples (own)."""
    L = experiment.length
    g = torch.Generator().manual_seed(seed)
    if kind == "own":
        return own_samples(samples, model, L, num, counts)
    if kind == "data":
        return experiment.sample_x0(num, g)
    return refined_draw(model, "dus", num, L, g, batch_size).samples


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grids", nargs="+", required=True)
    p.add_argument("--states", choices=("data", "model", "own"), default="data")
    p.add_argument("--samples", nargs="*", default=[], help="own: NAME=FILE.npz, each grid's samples")
    p.add_argument("--num", type=int, default=64)
    p.add_argument("--seed", type=int, default=1, help="the sequences' seed, >= 1 (the JYS search's is 0)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", type=Path)
    args, overrides = p.parse_known_args(argv)
    if args.seed < 1:
        raise ValueError(f"--seed must be >= 1 (seed 0 would draw count 0's uniforms from the states' own stream), "
                         f"got {args.seed}")
    cfg = compose_config(overrides)
    setup_torch(cfg)
    experiment = experiment_of(cfg)
    model = build_model(cfg, experiment)
    L = experiment.length
    grids = dict(parse_grid(s, L, model.process) for s in args.grids)
    if any("=" not in spec for spec in args.samples):
        raise ValueError(f"--samples takes NAME=FILE.npz, got {args.samples}")
    files = dict(spec.split("=", 1) for spec in args.samples)
    if (args.states == "own") != bool(files):
        raise ValueError("--samples goes with --states own (each grid read on its own samples), and only with it")
    if args.states == "own" and set(files) != set(grids):
        raise ValueError(f"--states own reads each grid on its own samples: --samples must name {sorted(grids)} "
                         f"(NAME=FILE.npz), got {sorted(files)}")
    order = dilated_order(L)
    t0 = time.time()
    with torch.no_grad():
        rows = {}
        shared = None if args.states == "own" else states(model, experiment, args.states, args.num, args.seed,
                                                          args.batch_size)
        fwd = None if shared is None else order_terms(model, shared, order, args.batch_size, per_sequence=True)[0]
        for name, counts in grids.items():
            x0 = shared if shared is not None else states(model, experiment, "own", args.num, args.seed,
                                                          args.batch_size, Path(files[name]), counts)
            steps = list(zip(counts, counts[1:]))
            # uniforms seeded seed·1000003 + k, the same for every grid (k = 0 would share seed 0's states' stream)
            rev, _ = sampler_order_terms(model, x0, order, starts=steps, seed=args.seed,
                                         batch_size=args.batch_size, per_sequence=True)
            per_step = {"sampler": torch.stack([rev[:, a, b] for a, b in steps])}  # [steps, M]
            if fwd is not None:  # on a grid's own output J's direction is no KL of anything: not read
                per_step["refined"] = torch.stack([fwd[:, a, b] for a, b in steps])
            rows[name] = {"counts": counts, **{f"J_{d}": v.sum(0).tolist() for d, v in per_step.items()},
                          **{f"steps_{d}": v.mean(1).tolist() for d, v in per_step.items()}}
    first = next(iter(rows))
    print(f"{args.num} sequences of " + ("each grid's own samples" if args.states == "own" else
                                          f"the {args.states}'s law") + "; J per sequence (nats), mean ± s.e.; "
          f"difference from {first}" + (" (unpaired)" if args.states == "own" else " paired by sequence"))
    for name, r in rows.items():
        cells = []
        for key in [k for k in ("J_refined", "J_sampler") if k in r]:
            v = torch.tensor(r[key], dtype=F64)
            base = torch.tensor(rows[first][key], dtype=F64)
            r[key + "_mean"], r[key + "_se"] = float(v.mean()), float(v.std() / math.sqrt(len(v)))
            if name == first:
                r[key + "_diff"], r[key + "_diff_se"] = 0.0, 0.0
            elif args.states == "own":  # different sequences: the two means' errors add
                r[key + "_diff"] = float(v.mean() - base.mean())
                r[key + "_diff_se"] = math.hypot(r[key + "_se"], float(base.std() / math.sqrt(len(base))))
            else:
                d = v - base
                r[key + "_diff"], r[key + "_diff_se"] = float(d.mean()), float(d.std() / math.sqrt(len(d)))
            diff = f" (− {first} {r[key + '_diff']:+.3f} ± {r[key + '_diff_se']:.3f})" if name != first else ""
            cells.append(f"{key} {r[key + '_mean']:7.3f} ± {r[key + '_se']:.3f}{diff}")
        print(f"{name:>12s}  " + "  ".join(cells) + f"  counts {r['counts']}")
        print(" " * 14 + "per step: " + "  ".join(f"{d} {[round(v, 2) for v in r['steps_' + d]]}"
                                                for d in ("refined", "sampler") if "steps_" + d in r))
    out = args.out or ROOT / "runs" / experiment.name / str(cfg.model.name) / f"order-j-{args.states}.json"
    atomic_write_json(out, {"experiment": experiment.name, "model": str(cfg.model.name), "states": args.states,
                            "num": args.num, "seed": args.seed, "overrides": overrides, "grids": rows, "samples": files,
                            "wall_time": time.time() - t0})
    print(f"wrote {out} ({time.time() - t0:.0f} s)")
    return out


if __name__ == "__main__":
    main()
