"""J on the sampler's own states (jys.onpolicy) for the grids of a brute-force scan (scripts/best_grid_scan.py): does it
order the grids as their samples do, where J on the process's states does not?

    python scripts/onpolicy_scan.py EXPERIMENT SCAN.json [--num 64] [--per-step N] [--random 40] [Hydra overrides]

Scores the scan's references, its grids below uniform and cosine on both metrics, the 10 lowest by each metric and by
the scan's lattice J, and `--random` more drawn with seed 0; prints Spearman's ρ of both J's with the metrics over
them and writes SCAN's name with `-onpolicy` under docs/records/scans/.
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

from scipy.stats import spearmanr

from common.io import atomic_write_json
from jys.lattice import base_lattice, lattice_size
from jys.onpolicy import OnPolicyJ
from jys.schedule import resolve_rule
from pipeline.build import oracle_setup

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("experiment")
    p.add_argument("scan", type=Path)
    p.add_argument("--num", type=int, default=64, help="sequences J is read on")
    p.add_argument("--per-step", type=int, default=1000,
                   help="at most this many model reads per step for the path term (default: every lattice point; "
                        "thinning biases long steps' terms)")
    p.add_argument("--random", type=int, default=40, help="further scanned grids, drawn with seed 0")
    a, overrides = p.parse_known_args()
    scan = json.loads(a.scan.read_text())
    st = scan["settings"]
    sampler = next(o.split("=", 1)[1] for o in st["overrides"] if o.startswith("sampler="))
    extra = [o for o in st["overrides"] if o.split("=")[0] not in ("experiment", "model", "sampler", "progress")]
    base, cfg, model = oracle_setup(a.experiment, sampler, [*extra, *overrides])
    eps, L, steps = float(cfg.eps), int(cfg.experiment.length), int(st["steps"])
    metric, second = scan["metric"], "bigram_tv"
    cells = scan["cells"]
    jkey = next((k for k in cells[0] if k.startswith("J_") and not k.startswith("J_terms")), None)
    pick = {json.dumps(c["times"]): c for c in scan.get("below_both", [])}
    for key in (metric, second, jkey):
        if key:
            for c in sorted([c for c in cells if c.get(key) is not None], key=lambda c: c[key])[:10]:
                pick[json.dumps(c["times"])] = c
    rest = [c for c in cells if json.dumps(c["times"]) not in pick]
    for c in random.Random(0).sample(rest, min(a.random, len(rest))):
        pick[json.dumps(c["times"])] = c
    chosen = list(scan["references"].items()) + [(None, c) for c in pick.values()]

    rule = resolve_rule(str(cfg.jys.rule), sampler, model.process.kernel, str(cfg.multi_jump))
    law = resolve_rule("sampler", sampler, model.process.kernel, str(cfg.multi_jump))
    J = OnPolicyJ(model, base_lattice(lattice_size(int(cfg.jys.lattice), steps), eps), a.num, L, rule, law,
                  per_step=a.per_step)
    t0, rows = time.time(), []
    for name, c in chosen:
        v = J.value(c["times"])
        rows.append({"name": name, "times": c["times"], metric: c[metric], second: c.get(second),
                     "J_lattice": c.get(jkey), "J_onpolicy": v.value, "J_onpolicy_se": v.se, "J_onpolicy_terms": v.terms})
        print(f"{name or '':14s} {[round(t, 4) for t in c['times']]}: {metric} {c[metric]:.4f} {second} {c.get(second, 0):.4f}"
              f" J {c.get(jkey) or float('nan'):.1f}  J_onpolicy {v.value:.1f} ± {v.se:.1f} {[round(d, 1) for d in v.terms]}"
              f"  ({time.time() - t0:.0f} s)", flush=True)
    grids = [r for r in rows if r["name"] is None]
    rho = {}
    for jk in ("J_lattice", "J_onpolicy"):
        on = [r for r in grids if r[jk] is not None]
        rho[jk] = {m: spearmanr([r[jk] for r in on], [r[m] for r in on]).statistic for m in (metric, second)}
    out = {"settings": {"scan": str(a.scan), "overrides": base, "num": a.num, "per_step": a.per_step,
                        "random": a.random, "model_calls": J.calls, "seconds": time.time() - t0},
           "spearman": rho, "rows": rows}
    path = ROOT / "docs" / "records" / "scans" / f"{a.scan.stem}-onpolicy.json"
    atomic_write_json(path, out)
    for jk, r in rho.items():
        best = min(grids, key=lambda g: g[jk] if g[jk] is not None else float("inf"))
        print(f"{jk}: ρ " + ", ".join(f"{m} {v:.2f}" for m, v in r.items()) + f" over {len(grids)} grids; its lowest "
              f"{[round(t, 4) for t in best['times']]}: {metric} {best[metric]:.4f}, {second} {best[second]:.4f}")
    print(f"-> {path}")


if __name__ == "__main__":
    main()
