"""J of DUS count grids in both directions, on the data's states or the model's own, with paired standard errors.

    python scripts/order_j.py experiment=text model=text-sedd --grids geometric:8 jys:FILE counts:0,16,32,...,128
        [--states data|model] [--num 64] [--seed 1] [--batch-size 64] [--out PATH]

JYS's J for DUS (jys/order.py) reads each step on the data's sequences standing for the refined path's states, in
the refined path's direction: D(k, k′) = Σ_j KL(p(x_{o_j} | X_j) ‖ p(x_{o_j} | X_k)). On the sequences of the model's
own law (`--states model`: DUS revealing one token per call in its dilated order, the refined path itself) that J is
exactly KL(refined ‖ grid) of the grid's output, per sequence; `sampler_order_terms` reads each step in the other
direction, KL(coarse step ‖ refined) on the coarse step's own tokens, what a sample's cross-entropy pays. This prints
both for each named grid, each grid's difference from the first, paired by sequence (every grid reads the same
sequences, and the sampler's direction the same uniforms per slot) and each step's mean, and writes them to a JSON
record.

Grids: geometric:N (DUS's levels, samplers.schedules.geometric_counts), counts:k_0,…,k_N, or a schedule file
(jys:FILE; its times as unmasked counts), optionally named NAME=GRID.
"""
from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import torch

from common.io import atomic_write_json
from jys.order import order_terms, sampler_order_terms
from pipeline.build import build_model, compose_config, setup_torch
from pipeline.experiment import experiment_of
from samplers.loop import run_sampler
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


def states(model, experiment, kind: str, num: int, seed: int, batch_size: int) -> torch.Tensor:
    """The sequences steps are read on: the data's, or the model's own law in DUS's order (one token per call)."""
    L = experiment.length
    g = torch.Generator().manual_seed(seed)
    if kind == "data":
        return experiment.sample_x0(num, g)
    times = times_from_counts(list(range(L + 1)), model.process, L)
    return run_sampler(model, "dus", times, num, L, g, batch_size=batch_size, progress=False).samples


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--grids", nargs="+", required=True)
    p.add_argument("--states", choices=("data", "model"), default="data")
    p.add_argument("--num", type=int, default=64)
    p.add_argument("--seed", type=int, default=1, help="the sequences' seed (the JYS search's is 0)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", type=Path)
    args, overrides = p.parse_known_args(argv)
    cfg = compose_config(overrides)
    setup_torch(cfg)
    experiment = experiment_of(cfg)
    model = build_model(cfg, experiment)
    L = experiment.length
    grids = dict(parse_grid(s, L, model.process) for s in args.grids)
    order = dilated_order(L)
    t0 = time.time()
    with torch.no_grad():
        x0 = states(model, experiment, args.states, args.num, args.seed, args.batch_size)
        fwd, _ = order_terms(model, x0, order, args.batch_size, per_sequence=True)
        rows = {}
        for name, counts in grids.items():
            steps = list(zip(counts, counts[1:]))
            rev, _ = sampler_order_terms(model, x0, order, starts=steps, seed=args.seed, batch_size=args.batch_size,
                                         per_sequence=True)
            per_step = {"refined": torch.stack([fwd[:, a, b] for a, b in steps]),
                        "sampler": torch.stack([rev[:, a, b] for a, b in steps])}  # [steps, M]
            rows[name] = {"counts": counts, **{f"J_{d}": v.sum(0).tolist() for d, v in per_step.items()},
                          **{f"steps_{d}": v.mean(1).tolist() for d, v in per_step.items()}}
    first = next(iter(rows))
    print(f"{args.num} sequences of the {args.states}'s law; J per sequence (nats), mean ± s.e.; "
          f"difference from {first} paired by sequence")
    for name, r in rows.items():
        cells = []
        for key in ("J_refined", "J_sampler"):
            v = torch.tensor(r[key], dtype=F64)
            d = v - torch.tensor(rows[first][key], dtype=F64)
            r[key + "_mean"], r[key + "_se"] = float(v.mean()), float(v.std() / math.sqrt(len(v)))
            r[key + "_diff"], r[key + "_diff_se"] = float(d.mean()), float(d.std() / math.sqrt(len(d)))
            cells.append(f"{key} {r[key + '_mean']:7.3f} ± {r[key + '_se']:.3f}"
                         + (f" (paired {r[key + '_diff']:+.3f} ± {r[key + '_diff_se']:.3f})" if name != first else ""))
        print(f"{name:>12s}  " + "  ".join(cells) + f"  counts {r['counts']}")
        print(" " * 14 + "per step: " + "  ".join(f"{d} {[round(v, 2) for v in r['steps_' + d]]}"
                                                for d in ("refined", "sampler")))
    out = args.out or ROOT / "runs" / experiment.name / str(cfg.model.name) / f"order-j-{args.states}.json"
    atomic_write_json(out, {"experiment": experiment.name, "model": str(cfg.model.name), "states": args.states,
                            "num": args.num, "seed": args.seed, "overrides": overrides, "grids": rows,
                            "wall_time": time.time() - t0})
    print(f"wrote {out} ({time.time() - t0:.0f} s)")
    return out


if __name__ == "__main__":
    main()
