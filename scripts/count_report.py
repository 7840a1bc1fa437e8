"""Collect the CountDown metrics into one table, runs/count/results.json and a log-log plot."""
import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from common.io import atomic_write_json, save_figure

ROOT = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", required=True)
    ap.add_argument("--samplers", nargs="+", required=True)
    ap.add_argument("--nfes", nargs="+", type=int, required=True)
    ap.add_argument("--runs", default=str(ROOT / "runs"))
    args = ap.parse_args()
    records = []
    for model in args.models:
        for path in sorted((Path(args.runs) / "count" / model / "metrics").glob("*.json")):
            r = json.loads(path.read_text())
            if ("nfe_calls" in r and r["sampler"] in args.samplers and r["nfe_calls"] in args.nfes
                    and r["schedule"] in ("uniform", "cosine", "jys")):
                records.append(r)
    out = Path(args.runs) / "count"
    if not records:
        sys.exit(f"no metrics records under {out}/<model>/metrics for models {args.models}, samplers "
                 f"{args.samplers}, NFE {args.nfes}: run the stages first (bash scripts/count.sh)")
    for model in args.models:  # one table row per model: never records of two weights or chains
        ids = {json.dumps(r.get("model_identity"), sort_keys=True) for r in records if r["model"] == model}
        if len(ids) > 1 or "null" in ids:
            sys.exit(f"metrics records of model {model!r} under {out} come from {len(ids)} model identities "
                     f"(or predate them): rerun the stages (bash scripts/count.sh) so that samples and metrics are remade")
    atomic_write_json(out / "results.json", records)
    table = defaultdict(dict)
    for r in records:
        table[(r["model"], r["sampler"], r["schedule"])][r["nfe_calls"]] = r["metrics"]["countdown_error"]
    print("\nCountDown error (fraction of broken transitions, every transition counted). NFE = model calls per "
          "sequence:\nEuler and Tweedie take NFE − 1 grid steps plus the noise-removal call, k-Gillespie NFE steps")
    print(f"{'model':<12}{'sampler':<12}{'schedule':<10}" + "".join(f"{'NFE ' + str(n):>10}" for n in args.nfes))
    for (model, sampler, schedule), row in sorted(table.items()):
        cells = "".join(f"{row[n]:>10.4f}" if n in row else f"{'-':>10}" for n in args.nfes)
        print(f"{model:<12}{sampler:<12}{schedule:<10}{cells}")
    fig, axes = plt.subplots(1, len(args.models), figsize=(5.5 * len(args.models), 4.2), squeeze=False)
    colors = {"uniform": "tab:green", "cosine": "tab:blue", "jys": "tab:orange"}  # colour: schedule
    styles = {"euler": "o-", "tweedie": "s--", "kgillespie": "^:"}  # marker and line: sampler
    for ax, model in zip(axes[0], args.models):
        for (m, sampler, schedule), row in sorted(table.items()):
            if m != model or not row:
                continue
            nfes = sorted(row)
            ax.plot(nfes, [max(row[n], 1e-5) for n in nfes], styles.get(sampler, "x-."), color=colors[schedule],
                    label=f"{schedule} ({sampler})")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("NFE (model calls per sequence)")
        ax.set_ylabel("CountDown error")
        ax.set_title(f"CountDown, {model}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(fig, out / "figures" / "error_vs_nfe.png")
    print(f"\n{len(records)} records -> {out / 'results.json'}; plot -> {out / 'figures' / 'error_vs_nfe.png'}")


if __name__ == "__main__":
    main()
