"""The KLUB-samples ablation's table, runs/ablation_klub/results.json and its figure, from the metrics files
that scripts/ablation_klub.sh leaves under runs/ablation_klub/{uniform,k<K>-s<seed>}/count/<model>/metrics/."""
import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from pipeline.io import atomic_write_json, save_figure  # noqa: E402
from scripts.figures import fig10_klub_samples  # noqa: E402

METRIC = "countdown_error"


def read(path: Path) -> dict:
    if not path.is_file():
        sys.exit(f"no metrics at {path}: run bash scripts/ablation_klub.sh first")
    return json.loads(path.read_text())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "runs" / "ablation_klub"))
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--ks", nargs="+", type=int, required=True)
    ap.add_argument("--seeds", nargs="+", type=int, required=True)
    ap.add_argument("--nfes", nargs="+", type=int, required=True, help="model calls per sequence (Euler: steps + 1)")
    args = ap.parse_args()
    out = Path(args.out)
    records, uniform = [], {}
    for model in args.models:
        for nfe in args.nfes:
            name = f"euler-{{}}-nfe{nfe - 1}.json"
            uniform[model, nfe] = read(out / "uniform" / "count" / model / "metrics" / name.format("uniform"))
            for k in args.ks:
                for s in args.seeds:
                    r = read(out / f"k{k}-s{s}" / "count" / model / "metrics" / name.format("jys"))
                    schedule = read(out / f"k{k}-s{s}" / "count" / model / "schedules" / name.format("jys"))
                    if schedule["num_samples"] != k or schedule["seed"] != s:
                        sys.exit(f"the schedule under k{k}-s{s} was searched with {schedule['num_samples']} samples "
                                 f"and seed {schedule['seed']}; rerun bash scripts/ablation_klub.sh")
                    records.append({**r, "sampling_seed": r["seed"], "seed": s, "klub_samples": k,
                                    "times": schedule["times"]})
    atomic_write_json(out / "results.json", records)
    print(f"CountDown error ({METRIC}) of Euler on JYS schedules searched with K KLUB samples: the mean over search "
          f"seeds {args.seeds} (min-max), and the uniform grid")
    print("| model | NFE | uniform | " + " | ".join(f"K = {k}" for k in args.ks) + " |")
    print("|---|---|---|" + "---|" * len(args.ks))
    for model in args.models:
        for nfe in args.nfes:
            cells = []
            for k in args.ks:
                v = [r["metrics"][METRIC] for r in records if r["model"] == model and r["nfe_calls"] == nfe
                     and r["klub_samples"] == k]
                cells.append(f"{np.mean(v):.4f} ({min(v):.4f}-{max(v):.4f})")
            print(f"| {model} | {nfe} | {uniform[model, nfe]['metrics'][METRIC]:.4f} | " + " | ".join(cells) + " |")
    fig = fig10_klub_samples(out.parent, tuple(args.nfes))
    path = save_figure(fig, out / "figures" / "error_vs_klub_samples.png")
    print(f"-> {out / 'results.json'}, {path}")


if __name__ == "__main__":
    main()
