"""The KLUB-samples ablation's table, runs/ablation_klub/results.json and its figure, from the metrics files
that scripts/ablation_klub.sh leaves under runs/ablation_klub/{uniform,k<K>-s<seed>}/count/<model>/metrics/."""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

from common.io import atomic_write_json, save_figure
from scripts.figures import fig10_klub_samples

ROOT = Path(__file__).resolve().parents[1]

METRIC = "countdown_error"


def read(path: Path) -> dict:
    if not path.is_file():
        sys.exit(f"no file at {path}: run bash scripts/ablation_klub.sh first")
    return json.loads(path.read_text())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "runs" / "ablation_klub"))
    ap.add_argument("--nfes", nargs="+", type=int, required=True, help="model calls per sequence (Euler: steps + 1)")
    args = ap.parse_args()
    out = Path(args.out)
    records = []
    for tree in sorted(out.glob("k*-s*")):  # every (K, search seed) that a run of the script made, for any model
        for nfe in args.nfes:
            for path in sorted(tree.glob(f"count/*/metrics/euler-jys-girsanov-hierarchy-nfe{nfe - 1}.json")):
                r = read(path)
                schedule = read(path.parents[1] / "schedules" / path.name)
                if f"k{schedule['num_samples']}-s{schedule['seed']}" != tree.name:
                    sys.exit(f"{path.parents[1] / 'schedules' / path.name} was searched with {schedule['num_samples']} "
                             f"samples and seed {schedule['seed']}, not as {tree.name} says; rerun bash scripts/ablation_klub.sh")
                records.append({**r, "search_seed": schedule["seed"], "klub_samples": schedule["num_samples"],
                                "times": schedule["times"]})
    if not records:
        sys.exit(f"no ablation cells under {out}: run bash scripts/ablation_klub.sh first")
    models = sorted({r["model"] for r in records})
    uniform = {(m, nfe): read(out / "uniform" / "count" / m / "metrics" / f"euler-uniform-nfe{nfe - 1}.json")
               for m in models for nfe in args.nfes}
    atomic_write_json(out / "results.json", records + list(uniform.values()))  # the uniform grid: Fig. 10's baseline
    ks = sorted({r["klub_samples"] for r in records})
    print(f"CountDown error ({METRIC}) of Euler on JYS schedules searched with K KLUB samples: the mean over search "
          f"seeds (min-max, number of seeds), and the uniform grid")
    print("| model | NFE | uniform | " + " | ".join(f"K = {k}" for k in ks) + " |")
    print("|---|---|---|" + "---|" * len(ks))
    for model in models:
        for nfe in args.nfes:
            cells = []
            for k in ks:
                v = [r["metrics"][METRIC] for r in records if r["model"] == model and r["nfe_calls"] == nfe
                     and r["klub_samples"] == k]
                cells.append(f"{np.mean(v):.4f} ({min(v):.4f}-{max(v):.4f}, {len(v)})" if v else "-")
            print(f"| {model} | {nfe} | {uniform[model, nfe]['metrics'][METRIC]:.4f} | " + " | ".join(cells) + " |")
    fig = fig10_klub_samples(out.parent, tuple(args.nfes), experiment=out.name)
    path = save_figure(fig, out / "figures" / "error_vs_klub_samples.png")
    print(f"-> {out / 'results.json'}, {path}")


if __name__ == "__main__":
    main()
