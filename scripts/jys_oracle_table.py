"""JYS against uniform, cosine and the best power grid on the exact oracle: one experiment, one sampler.

    python scripts/jys_oracle_table.py EXPERIMENT [--sampler euler] [--nfes 4 8 16 32] [--num 1024]
        [--tag NAME] [--no-power] [Hydra overrides, e.g. eps=0.01 oracle.chain_file=... jys.coarse_state=start]

The power grid t_i = 1 − (1 − ε)(i/N)^q, with q chosen per NFE on the true metric (an oracle-only ceiling:
no practical method knows the metric). Prints a table and writes runs/<experiment>/oracle/table-<sampler>
[-<tag>].json; each cell is kept there as it is computed, and a rerun with the same settings reuses it.
Metric: countdown_error for CountDown under the absorbing kernel, chain_nll otherwise.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from common.io import atomic_write_json
from metrics.sequences import chain_nll, countdown_error
from pipeline.build import compose_config, oracle_metric, oracle_setup
from pipeline.search import optimize_config
from samplers.loop import run_sampler
from samplers.schedules import cosine, uniform

ROOT = Path(__file__).resolve().parents[1]

POWERS = (0.05, 0.075, 0.1, 0.15, 0.2, 0.35, 0.5, 0.75, 1.5, 2.0, 3.0)


def power(nfe: int, q: float, eps: float) -> torch.Tensor:
    i = torch.arange(nfe + 1, dtype=torch.float64)
    return 1 - (1 - eps) * (i / nfe) ** q


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("experiment")
    p.add_argument("--sampler", default="euler")
    p.add_argument("--nfes", type=int, nargs="+", default=[4, 8, 16, 32])
    p.add_argument("--num", type=int, default=1024, help="samples per cell")
    p.add_argument("--tag", default="")
    p.add_argument("--no-power", action="store_true", help="skip the power grids (they do not depend on the search)")
    a, overrides = p.parse_known_args()
    base, cfg, model = oracle_setup(a.experiment, a.sampler, overrides)
    chain = model.data_chain
    eps, L = float(cfg.eps), int(cfg.experiment.length)
    metric_name = oracle_metric(cfg, model)
    out = Path(cfg.runs_dir) / a.experiment / "oracle" / f"table-{a.sampler}{'-' + a.tag if a.tag else ''}.json"
    settings = {"overrides": base, "num": a.num, "metric": metric_name, "model": model.identity()}
    table = json.loads(out.read_text()) if out.is_file() else {}
    if table.get("settings") != settings:
        table = {"settings": settings, "cells": {}}

    def cell(name: str, nfe: int, grid: torch.Tensor) -> float:
        key = f"{name}@{nfe}"
        if key not in table["cells"]:
            res = run_sampler(model, a.sampler, grid, a.num, L, 0, batch_size=512,
                              progress=False)
            value = countdown_error(res.samples) if metric_name == "countdown_error" else chain_nll(res.samples, chain, float(cfg.oracle.floor))
            table["cells"][key] = {"value": value, "times": grid.tolist(), "model_calls": res.nfe}
            atomic_write_json(out, table)
        return table["cells"][key]["value"]

    print(f"{a.experiment}, {a.sampler}, {metric_name}, {a.num} samples, seed 0 ({' '.join(overrides)})")
    print(f"{'NFE':>4}{'uniform':>10}{'cosine':>10}{'JYS':>10}{'best power':>12}{'q':>6}{'JYS/unif':>10}{'JYS/power':>11}"
          f"{'t_mix':>8}")
    for nfe in a.nfes:
        t0 = time.time()
        rec = json.loads(optimize_config(compose_config(base + [f"nfe={nfe}"]), model).read_text())
        jys = cell("jys", nfe, torch.tensor(rec["times"], dtype=torch.float64))
        uni, cos = cell("uniform", nfe, uniform(nfe, eps)), cell("cosine", nfe, cosine(nfe, eps))
        powers = {} if a.no_power else {q: cell(f"power{q}", nfe, power(nfe, q, eps)) for q in POWERS}
        q = min(powers, key=powers.get) if powers else None
        best = powers[q] if powers else float("nan")
        table["cells"][f"jys@{nfe}"]["t_mix"] = rec["t_mix"]
        atomic_write_json(out, table)
        print(f"{nfe:>4}{uni:>10.4f}{cos:>10.4f}{jys:>10.4f}{best:>12.4f}{str(q):>6}{jys / uni:>10.2f}"
              f"{jys / best:>11.2f}{rec['t_mix']:>8.3f}   ({time.time() - t0:.0f} s)", flush=True)
    print(f"-> {out}")


if __name__ == "__main__":
    main()
