"""The best grid of a few steps by brute force on the exact oracle: every grid whose interior points lie on a set of
candidate times, scored by its samples. It bounds what any schedule (JYS or another) can reach at that budget.

    python scripts/best_grid_scan.py EXPERIMENT [--sampler euler] [--calls 4] [--points 24] [--num 256]
        [--compare 8] [Hydra overrides]

Candidates: `--points` times of the J lattice (jys.search=lattice's base_lattice, thinned evenly), so the DP grid's
neighbourhood is covered; grids of (calls − 1) steps for Euler/τ-leaping (the noise-removal call is the last), all
(points choose steps − 1) of them. Metric: countdown error (absorbing CountDown) or chain NLL, sampling seed 0 for
every grid (common random numbers). `--compare N` also samples the uniform grid at N model calls, the paper's
"JYS at n calls below uniform at 2n" reference. Writes runs/<experiment>/oracle/scan-<sampler>-<calls>.json.
"""
from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import torch

from common.io import atomic_write_json
from jys.lattice import base_lattice
from metrics.sequences import chain_nll, countdown_error
from pipeline.build import oracle_metric, oracle_setup
from samplers.loop import run_sampler
from samplers.registry import steps_for_calls
from samplers.schedules import uniform

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("experiment")
    p.add_argument("--sampler", default="euler")
    p.add_argument("--calls", type=int, default=4)
    p.add_argument("--points", type=int, default=24, help="candidate interior times")
    p.add_argument("--num", type=int, default=256, help="samples per grid")
    p.add_argument("--compare", type=int, default=None, help="also the uniform grid at this many model calls")
    a, overrides = p.parse_known_args()
    base, cfg, model = oracle_setup(a.experiment, a.sampler, overrides)
    eps, L = float(cfg.eps), int(cfg.experiment.length)
    steps = steps_for_calls(a.sampler, a.calls)
    if steps < 2:
        raise SystemExit(f"{a.calls} calls give {steps} grid step(s): nothing to scan")
    name = oracle_metric(cfg, model)
    inner = [t for t in base_lattice(int(cfg.jys.lattice), eps) if eps < t < 1.0]
    pick = torch.linspace(0, len(inner) - 1, min(a.points, len(inner))).round().long().unique().tolist()
    cands = [inner[i] for i in pick]

    def score(grid: list[float]) -> float:
        x = run_sampler(model, a.sampler, torch.tensor(grid, dtype=torch.float64), a.num, L, 0, batch_size=512,
                        final_step=str(cfg.final_step), progress=False, multi_jump=str(cfg.multi_jump)).samples
        return countdown_error(x) if name == "countdown_error" else chain_nll(x, model.data_chain, float(cfg.oracle.floor))

    t0 = time.time()
    cells = []
    for pts in itertools.combinations(cands, steps - 1):  # decreasing: candidates are in decreasing order
        grid = [1.0, *pts, eps]
        cells.append({"times": grid, name: score(grid)})
    cells.sort(key=lambda c: c[name])
    out = {"settings": {"overrides": base, "calls": a.calls, "steps": steps, "num": a.num, "candidates": cands,
                        "model": model.identity()}, "metric": name, "best": cells[0], "cells": cells}
    if a.compare:
        out["uniform_at_compare"] = {"calls": a.compare, name: score(uniform(steps_for_calls(a.sampler, a.compare),
                                                                             eps).tolist())}
    path = ROOT / cfg.runs_dir / a.experiment / "oracle" / f"scan-{a.sampler}-{a.calls}.json"
    atomic_write_json(path, out)
    print(f"{len(cells)} grids of {steps} steps ({time.time() - t0:.0f} s, {a.num} samples each): best {name} "
          f"{cells[0][name]:.4f} at {[round(t, 4) for t in cells[0]['times']]}; 5th best {cells[min(4, len(cells) - 1)][name]:.4f}")
    if a.compare:
        print(f"uniform at {a.compare} calls: {out['uniform_at_compare'][name]:.4f}")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
