"""The fixed grids with their noise-removal call made a step, as jys.end=denoise does for JYS: how much of JYS's gain
at a budget is that call, and how much the grid.

    python scripts/placed_baselines.py EXPERIMENT [--sampler euler] [--calls 4 8] [--num 512] [--seeds 3] [overrides]

For each budget of n model calls (n − 1 grid steps and the noise removal) samples uniform, cosine and the power grids
of n steps to ε with ε dropped (so that the noise removal's draw makes the last step, at the grid's own last time),
with the same sampler, sample count and seeds as scripts/jys_grid_table.py, and prints each beside that table's
cells (runs/<experiment>/oracle/grids-<sampler>-end.json) where it exists. Writes
docs/records/placed/<experiment>-<sampler>.json.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from common.io import atomic_write_json
from metrics.sequences import bigram_tv, chain_nll, countdown_error
from pipeline.build import oracle_metric, oracle_setup
from pipeline.experiment import experiment_of
from results.grids import seed_summary
from samplers.loop import run_sampler
from samplers.registry import steps_for_calls
from samplers.schedules import POWERS, cosine, power, uniform

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("experiment")
    p.add_argument("--sampler", default="euler")
    p.add_argument("--calls", type=int, nargs="+", default=[4, 8])
    p.add_argument("--num", type=int, default=512)
    p.add_argument("--seeds", type=int, default=3)
    a, overrides = p.parse_known_args()
    base, cfg, model = oracle_setup(a.experiment, a.sampler, [o for o in overrides if o != "--"])
    if experiment_of(cfg).prefix:
        raise SystemExit(f"{a.experiment} conditions on a prefix: its protocol (hellinger_ref) is the grid table's, not "
                         "this script's chain NLL")
    if str(cfg.final_step) != "sample":
        raise SystemExit(f"final_step={cfg.final_step}: the noise removal is no draw, nothing to place")
    eps, L, floor = float(cfg.eps), int(cfg.experiment.length), float(cfg.oracle.floor)
    name, chain = oracle_metric(cfg, model), model.data_chain.mixed(floor)
    table_file = ROOT / cfg.runs_dir / a.experiment / "oracle" / f"grids-{a.sampler}-end.json"
    table = json.loads(table_file.read_text())["cells"] if table_file.is_file() else {}

    def score(grid: list[float]) -> dict:
        per_seed = []
        for seed in range(a.seeds):
            x = run_sampler(model, a.sampler, torch.tensor(grid, dtype=torch.float64), a.num, L, seed, batch_size=512,
                            final_step="sample", progress=False, multi_jump=str(cfg.multi_jump)).samples
            per_seed.append({name: countdown_error(x) if name == "countdown_error" else chain_nll(x, model.data_chain, floor),
                             "bigram_tv": bigram_tv(x, chain)})
        return {"times": grid, **seed_summary(per_seed)}

    out = {"settings": {"overrides": base, "num": a.num, "seeds": a.seeds}, "cells": {}}
    for calls in a.calls:
        steps = steps_for_calls(a.sampler, calls)
        grids = {"uniform": uniform(steps + 1, eps), "cosine": cosine(steps + 1, eps),
                 **{f"power{q:g}": power(steps + 1, q, eps) for q in POWERS}}
        print(f"\n{a.experiment}, {a.sampler}, {calls} calls: the grid of {steps + 1} steps, its last by the noise removal")
        for g, times in grids.items():
            cell = score(times.tolist()[:-1])
            out["cells"][f"{g}@{calls}"] = cell
            at_eps = table.get(f"{g}@{calls}", {})
            print(f"{g:>10}: {name} {cell[name]:.4f} ± {cell.get(name + '_se', 0):.4f}, bigram_tv {cell['bigram_tv']:.4f}"
                  + (f"   (at ε: {at_eps[name]:.4f}, {at_eps['bigram_tv']:.4f})" if at_eps else ""), flush=True)
        if f"dp@{calls}" in table:
            dp = table[f"dp@{calls}"]
            print(f"{'JYS':>10}: {name} {dp[name]:.4f} ± {dp.get(name + '_se', 0):.4f}, bigram_tv {dp['bigram_tv']:.4f}")
        path = ROOT / "docs" / "records" / "placed" / f"{a.experiment}-{a.sampler}.json"
        atomic_write_json(path, out)
    print(f"-> {path}")


if __name__ == "__main__":
    main()
