"""J on the sampler's own states (jys.onpolicy) for the grids of a grid table (scripts/jys_grid_table.py) at one
budget: does it order uniform, cosine, the power grids, the hierarchy and J's optimum as their samples do?

    python scripts/onpolicy_grids.py RECORD --calls 4 [--num 64] [Hydra overrides]

RECORD: docs/records/grids/<experiment>/oracle/grids-<sampler>-<tag>.json. Prints each grid's J (the table's) and
J on the sampler's states beside its metrics, and Spearman's ρ of each with each metric; writes
docs/records/onpolicy/<experiment>-<sampler>-<tag>-<calls>.json.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from scipy.stats import spearmanr

from common.io import atomic_write_json
from jys.lattice import base_lattice, lattice_size
from jys.onpolicy import OnPolicyJ
from jys.schedule import resolve_rule
from pipeline.build import oracle_setup
from pipeline.experiment import experiment_of

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("record", type=Path)
    p.add_argument("--calls", type=int, required=True)
    p.add_argument("--num", type=int, default=64, help="sequences J is read on")
    p.add_argument("--marginal", action="store_true",
                   help="J_Q's one-step term of each token's law given the context (jys.weight=marginal's)")
    a, overrides = p.parse_known_args()
    rec = json.loads(a.record.read_text())
    st = rec["settings"]
    over = {o.split("=", 1)[0]: o.split("=", 1)[1] for o in st["overrides"]}
    extra = [o for o in st["overrides"] if o.split("=")[0] not in ("experiment", "model", "sampler", "progress")]
    base, cfg, model = oracle_setup(over["experiment"], over["sampler"], [*extra, *overrides])
    cells = {k.rsplit("@", 1)[0]: v for k, v in rec["cells"].items() if k.endswith(f"@{a.calls}") and "times" in v}
    if not cells:
        raise SystemExit(f"{a.record} has no grids at {a.calls} calls")
    steps = len(next(iter(cells.values()))["times"]) - 1
    metrics = [m for m in ("chain_nll", "bigram_tv", "hellinger_ref", "countdown_error") if m in next(iter(cells.values()))]
    kernel = model.process.kernel
    rule = resolve_rule(str(cfg.jys.rule), over["sampler"], kernel, str(cfg.multi_jump))
    law = resolve_rule("sampler", over["sampler"], kernel, str(cfg.multi_jump))
    K = int(cfg.experiment.get("prefix", 0) or 0)
    prefix = experiment_of(cfg).sample_x0(a.num, torch.Generator().manual_seed(0))[:, :K] if K else None
    points = base_lattice(lattice_size(int(st.get("lattice", 32)), steps), float(cfg.eps))
    points = sorted(set(points) | {float(t) for c in cells.values() for t in c["times"]}, reverse=True)
    J = OnPolicyJ(model, points, a.num, int(cfg.experiment.length), rule, law, per_step=len(points), prefix=prefix,
                  marginal=a.marginal)
    t0, rows = time.time(), {}
    for name, c in cells.items():
        v = J.value(c["times"])
        rows[name] = {**{m: c.get(m) for m in metrics}, "times": c["times"], "J": c.get("J"), "J_onpolicy": v.value,
                      "J_onpolicy_se": v.se, "J_onpolicy_terms": v.terms}
        print(f"{name:22s} " + " ".join(f"{m} {c[m]:.4f}" for m in metrics if c.get(m) is not None)
              + f"  J {c.get('J') or float('nan'):8.1f}  J_onpolicy {v.value:8.1f} ± {v.se:.1f}  ({time.time() - t0:.0f} s)",
              flush=True)
    rho = {jk: {m: spearmanr([r[jk] for r in rows.values()], [r[m] for r in rows.values()]).statistic
                for m in metrics if all(r[m] is not None for r in rows.values())} for jk in ("J", "J_onpolicy")}
    for jk, r in rho.items():
        best = min(rows, key=lambda n: rows[n][jk])
        print(f"{jk}: ρ " + ", ".join(f"{m} {v:.2f}" for m, v in r.items()) + f"; lowest: {best}")
    out = ROOT / "docs" / "records" / "onpolicy" / f"{over['experiment']}-{a.record.stem.removeprefix('grids-')}{'-marginal' if a.marginal else ''}-{a.calls}.json"
    atomic_write_json(out, {"settings": {"record": str(a.record), "calls": a.calls, "num": a.num, "overrides": base,
                                         "marginal": a.marginal,
                                         "model_calls": J.calls, "seconds": time.time() - t0}, "spearman": rho, "rows": rows})
    print(f"-> {out}")


if __name__ == "__main__":
    main()
