"""The best grid of a few steps by brute force on the exact oracle: every grid whose interior points lie on a set of
candidate times, scored by its samples. It bounds what any schedule (JYS or another) can reach at that budget.

    python scripts/best_grid_scan.py EXPERIMENT [--sampler euler] [--calls 4] [--points 24] [--num 256]
        [--compare 8] [Hydra overrides]

Candidates: `--points` times of the J lattice (jys.search=lattice's for this many steps, thinned evenly), so the DP grid's
neighbourhood is covered; grids of (calls − 1) steps for Euler/τ-leaping (the noise-removal call is the last), all
(points choose steps − 1) of them. Metric: countdown error (absorbing CountDown) or chain NLL with the bigram TV to the
chain beside it (two metrics that can disagree: the scan says which grids beat uniform and cosine on both, so whether
a bar on both can be met at all at this budget), sampling seed 0 for every grid (common random numbers). Uniform,
cosine and each `--grid` (a JSON file with `times`, e.g. a JYS schedule) are scored too, as references. `--compare
N` also samples the uniform grid at N model calls, the paper's "JYS at n calls below uniform at 2n" reference.
Where a `--grid` is a JYS lattice schedule (its `state_file`, the cached table of J's interval terms D), each scanned
grid whose points lie on that lattice also gets J = Σ D over its steps, and the rank correlations of J with the
metrics over the scan are printed: how J orders the grids that the samples order.
Writes runs/<experiment>/oracle/scan-<sampler>-<calls>.json.
"""
from __future__ import annotations

import argparse
import itertools
import json
import time
from pathlib import Path

import torch
from scipy.stats import spearmanr

from common.io import atomic_write_json
from jys.lattice import base_lattice, lattice_size
from metrics.sequences import bigram_tv, chain_nll, countdown_error
from pipeline.build import oracle_metric, oracle_setup
from results.grids import seed_summary
from samplers.loop import run_sampler
from samplers.registry import steps_for_calls
from samplers.schedules import cosine, uniform

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("experiment")
    p.add_argument("--sampler", default="euler")
    p.add_argument("--calls", type=int, default=4)
    p.add_argument("--points", type=int, default=24, help="candidate interior times")
    p.add_argument("--num", type=int, default=256, help="samples per grid")
    p.add_argument("--compare", type=int, default=None, help="also the uniform grid at this many model calls")
    p.add_argument("--seeds", type=int, default=1,
                   help="sampling seeds 0..N-1 for the references and the grids below both (a scan of many grids on "
                        "one seed selects its winners partly by noise)")
    p.add_argument("--grid", action="append", default=[], metavar="JSON",
                   help="a schedule file (key `times`) of the same steps to score beside uniform and cosine")
    a, overrides = p.parse_known_args()
    base, cfg, model = oracle_setup(a.experiment, a.sampler, overrides)
    eps, L = float(cfg.eps), int(cfg.experiment.length)
    steps = steps_for_calls(a.sampler, a.calls)
    if steps < 2:
        raise SystemExit(f"{a.calls} calls give {steps} grid step(s): nothing to scan")
    name = oracle_metric(cfg, model)
    # the lattice the search puts J's optimum on for this many steps (jys.lattice, at least 4 points per step)
    inner = [t for t in base_lattice(lattice_size(int(cfg.jys.lattice), steps), eps) if eps < t < 1.0]
    pick = torch.linspace(0, len(inner) - 1, min(a.points, len(inner))).round().long().unique().tolist()
    cands = [inner[i] for i in pick]

    second = None if name == "countdown_error" else "bigram_tv"
    path = ROOT / cfg.runs_dir / a.experiment / "oracle" / f"scan-{a.sampler}-{a.calls}.json"
    settings = {"overrides": base, "calls": a.calls, "steps": steps, "num": a.num, "candidates": cands,
                "model": model.identity(), "bigram_tv": "against the chain mixed with oracle.floor"}

    def sample_key(st: dict) -> dict:  # what moves a grid's seed-0 metrics: not the candidates, nor threads
        return {**{k: v for k, v in st.items() if k != "candidates"},
                "overrides": [o for o in st.get("overrides", []) if not o.startswith("threads=")]}

    prior = json.loads(path.read_text()) if path.is_file() else {}
    done = {json.dumps(c["times"]): c for c in [*prior.get("cells", []), *prior.get("references", {}).values()]} \
        if sample_key(prior.get("settings", {})) == sample_key(settings) else {}
    floor = float(cfg.oracle.floor)
    exact = model.data_chain.mixed(floor)  # the law the oracle is exact for: the bigram TV's reference, as the grid tables

    def score(grid: list[float], seed: int = 0) -> dict:
        if seed == 0 and json.dumps(grid) in done:
            return {k: v for k, v in done[json.dumps(grid)].items() if not k.startswith("J_") and k != "seeds"}
        x = run_sampler(model, a.sampler, torch.tensor(grid, dtype=torch.float64), a.num, L, seed, batch_size=512,
                        final_step=str(cfg.final_step), progress=False, multi_jump=str(cfg.multi_jump)).samples
        if second is None:
            return {"times": grid, name: countdown_error(x)}
        return {"times": grid, name: chain_nll(x, model.data_chain, floor), second: bigram_tv(x, exact)}

    refs = {"uniform": uniform(steps, eps).tolist(), "cosine": cosine(steps, eps).tolist()}
    tables = []  # J's lattice tables of the --grid schedules: (name, {point: index}, D)
    for grid_file in a.grid:
        sched = json.loads(Path(grid_file).read_text())
        times = [float(t) for t in sched["times"]]
        if len(times) != steps + 1:
            raise SystemExit(f"--grid {grid_file} has {len(times) - 1} steps; {a.calls} calls of {a.sampler} take {steps}")
        refs[Path(grid_file).stem] = times
        table = ROOT / sched["state_file"] if sched.get("search") == "lattice" else None
        if table is not None and table.is_file():
            t = json.loads(table.read_text())
            D = [[float("inf") if v is None else v for v in row] for row in t["D"]]
            # J = Σ D over the steps only for a plain table ([n, n]; the suffix weights keep [3, n, n] parts)
            if any(not isinstance(v, (int, float)) for row in D for v in row):
                raise SystemExit(f"--grid {grid_file}: its lattice table {table} is not one D of interval terms "
                                 f"(weight {t['key'].get('weight')!r}); J of a grid is not its sum")
            tables.append((Path(grid_file).stem, {round(q, 9): i for i, q in enumerate(t["key"]["points"])}, D))

    def lattice_J(index: dict, D: list, times: list[float]) -> list[float] | None:
        """J's term of each step of a grid on the table's lattice (None off it); J is their sum."""
        ii = [index.get(round(q, 9)) for q in times]
        return None if None in ii else [D[i][j] for i, j in zip(ii, ii[1:])]

    t0 = time.time()
    references = {k: score(g) for k, g in refs.items()}
    cells = [score([1.0, *pts, eps])  # decreasing: candidates are in decreasing order
             for pts in itertools.combinations(cands, steps - 1)]
    cells.sort(key=lambda c: c[name])
    out = {"settings": settings, "metric": name, "best": cells[0], "references": references, "cells": cells}
    if a.compare:
        out["uniform_at_compare"] = {"calls": a.compare, **score(uniform(steps_for_calls(a.sampler, a.compare), eps).tolist())}
    if second:
        # grids at or below the better of uniform and cosine on both metrics at once
        bar = {m: min(references["uniform"][m], references["cosine"][m]) for m in (name, second)}
        out["best_" + second] = min(cells, key=lambda c: c[second])
        out["below_both"] = [c for c in cells if c[name] <= bar[name] and c[second] <= bar[second]]
    if a.seeds > 1:  # the references and the grids below both again on seeds 1..N-1: mean ± s.e. over seeds
        for c in [*references.values(), *out.get("below_both", [])]:
            fresh = [{k: v for k, v in score(c["times"], seed).items() if k in (name, second)}
                     for seed in range(1, a.seeds)]
            c["seeds"] = seed_summary([{k: v for k, v in c.items() if k in (name, second)}] + fresh)
            c["fresh_seeds"] = seed_summary(fresh)  # seeds that did not select the grid (seed 0 did)
    atomic_write_json(path, out)  # the samples' metrics first: J below reads tables, and must not lose them
    for stem, index, D in tables:
        for c in [*cells, *references.values()]:
            terms = lattice_J(index, D, c["times"])
            c[f"J_{stem}"] = None if terms is None else sum(terms)
            if terms is not None:
                c[f"J_terms_{stem}"] = terms
        on = [c for c in cells if c[f"J_{stem}"] is not None]
        if len(on) > 2:
            Js = [c[f"J_{stem}"] for c in on]
            out[f"spearman_J_{stem}"] = {m: spearmanr(Js, [c[m] for c in on]).statistic for m in (name, second) if m}
    atomic_write_json(path, out)

    print(f"{len(cells)} grids of {steps} steps ({time.time() - t0:.0f} s, {a.num} samples each): best {name} "
          f"{cells[0][name]:.4f} at {[round(t, 4) for t in cells[0]['times']]}; 5th best {cells[min(4, len(cells) - 1)][name]:.4f}")
    def over_seeds(c: dict) -> str:
        if "seeds" not in c:
            return ""
        m = c["seeds"]
        f = c["fresh_seeds"]
        return f" (seeds 0..{a.seeds - 1}: " + ", ".join(
            f"{k} {m[k]:.4f} ± {m[k + '_se']:.4f}" for k in (name, second) if k) + f"; seeds 1..{a.seeds - 1} alone: " + \
            ", ".join(f"{f[k]:.4f}" for k in (name, second) if k) + ")"

    for k, c in references.items():
        print(f"{k}: {name} {c[name]:.4f}" + (f", {second} {c[second]:.4f}" if second else "")
              + f" at {[round(t, 4) for t in c['times']]}" + over_seeds(c))
    if second:
        b, both = out["best_" + second], out["below_both"]
        print(f"best {second} {b[second]:.4f} ({name} {b[name]:.4f}) at {[round(t, 4) for t in b['times']]}; "
              f"{len(both)} of {len(cells)} grids at or below min(uniform, cosine) on both "
              f"({bar[name]:.4f}, {bar[second]:.4f})" + "".join(
                  f"\n  {c[name]:.4f} / {c[second]:.4f} at {[round(t, 4) for t in c['times']]}{over_seeds(c)}"
                  for c in both))
    for stem, _, _ in tables:
        if f"spearman_J_{stem}" in out:
            on = [c for c in cells if c[f"J_{stem}"] is not None]
            rank = sorted(on, key=lambda c: c[f"J_{stem}"])
            print(f"J of {stem}'s lattice table on {len(on)} scanned grids: ρ " + ", ".join(
                f"{m} {r:.2f}" for m, r in out[f"spearman_J_{stem}"].items()) + "; its lowest:" + "".join(
                f"\n  J {c[f'J_{stem}']:.1f}: {name} {c[name]:.4f}" + (f", {second} {c[second]:.4f}" if second else "")
                + f" at {[round(t, 4) for t in c['times']]}, terms {[round(d, 1) for d in c[f'J_terms_{stem}']]}"
                for c in rank[:5]))
    if a.compare:
        print(f"uniform at {a.compare} calls: {out['uniform_at_compare'][name]:.4f}")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
