"""Collect the music metrics into one table, runs/<experiment>/results.json, the figure
runs/<experiment>/figures/hellinger_vs_nfe.png (JYS Fig. 8 left) and a piano roll of a few
continuations per schedule at one NFE, runs/<experiment>/figures/rolls_nfe<N>.png."""
import argparse
import json
import sys
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from common.io import atomic_write_json, save_figure

ROOT = Path(__file__).resolve().parents[1]

SCHEDULES = ("uniform", "cosine", "jys")
COLORS = {"uniform": "tab:green", "cosine": "tab:blue", "jys": "tab:orange"}
METRICS = {"hellinger_ref": "H to NFE-512 samples", "hellinger_true": "H to the true continuation"}
REST = 128


def load_records(model_dir: Path, samplers, nfes, reference: int, reference_seed: int) -> tuple[list, dict]:
    cells, refs = [], {}
    for path in sorted((model_dir / "metrics").glob("*.json")):
        r = json.loads(path.read_text())
        if r["schedule"] == "uniform" and r["nfe_calls"] == reference and r["seed"] == reference_seed:
            refs[r["sampler"]] = r
        elif r["sampler"] in samplers and r["schedule"] in SCHEDULES and r["nfe_calls"] in nfes and r["seed"] == 0:
            cells.append(r)
    if not cells:
        sys.exit(f"no metrics records under {model_dir / 'metrics'}: run the stages first (bash scripts/piano.sh)")
    identities = {json.dumps(r.get("model_identity"), sort_keys=True) for r in cells + list(refs.values())}
    counts = {r["num_samples"] for r in cells + list(refs.values())}
    if len(identities) > 1 or len(counts) > 1:
        sys.exit(f"metrics records under {model_dir} come from {len(identities)} model identities and sample counts "
                 f"{sorted(counts)}: one table holds one of each; rerun bash scripts/piano.sh or move stale files away")
    return cells, refs


def schedule_shape(model_dir: Path, sampler: str, nfe_steps: int) -> str:
    path = model_dir / "schedules" / f"{sampler}-jys-nfe{nfe_steps}.json"
    if not path.is_file():
        return ""
    times = json.loads(path.read_text())["times"]
    steps = np.diff(-np.asarray(times))
    return (f"JYS grid, {sampler}, {nfe_steps} steps: " + ", ".join(f"{t:.3f}" for t in times) +
            f"\n  step sizes: " + ", ".join(f"{s:.3f}" for s in steps))


def piano_rolls(cells, sampler: str, nfe: int, prefix: int, path: Path, tunes: int = 4):
    chosen = {r["schedule"]: r for r in cells if r["sampler"] == sampler and r["nfe_calls"] == nfe}
    schedules = [s for s in SCHEDULES if s in chosen]
    if not schedules:
        return False
    fig, axes = plt.subplots(tunes, len(schedules), figsize=(4.2 * len(schedules), 1.6 * tunes), squeeze=False)
    for j, schedule in enumerate(schedules):
        with np.load(chosen[schedule]["samples_file"]) as f:
            x = f["samples"][:tunes]
        for i in range(tunes):
            ax = axes[i, j]
            seq = x[i].astype(float)
            seq[seq == REST] = np.nan
            steps = np.arange(len(seq))
            ax.step(steps[:prefix], seq[:prefix], where="post", color="gray", lw=2)
            ax.step(steps[prefix - 1:], seq[prefix - 1:], where="post", color=COLORS[schedule], lw=1.5)
            ax.axvline(prefix, color="k", lw=0.5, ls=":")
            ax.set_xlim(0, len(seq))
            ax.tick_params(labelsize=7)
            if i == 0:
                ax.set_title(f"{schedule}, NFE {nfe} (gray: the given 2 bars)", fontsize=9)
            if j == 0:
                ax.set_ylabel("MIDI pitch", fontsize=8)
    save_figure(fig, path)
    return True


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--experiment", default="folk")
    ap.add_argument("--model", default="folk-tauldr")
    ap.add_argument("--samplers", nargs="+", required=True)
    ap.add_argument("--nfes", nargs="+", type=int, required=True, help="model calls per sequence")
    ap.add_argument("--reference", type=int, default=512, help="model calls of the reference samples")
    ap.add_argument("--reference-seed", type=int, default=100)
    ap.add_argument("--prefix", type=int, default=32)
    ap.add_argument("--roll-nfe", type=int, default=8)
    ap.add_argument("--runs", default=str(ROOT / "runs"))
    args = ap.parse_args()
    out = Path(args.runs) / args.experiment
    model_dir = out / args.model
    cells, refs = load_records(model_dir, args.samplers, args.nfes, args.reference, args.reference_seed)
    floor_path = out / "floor.json"
    floor = json.loads(floor_path.read_text()) if floor_path.is_file() else None
    atomic_write_json(out / "results.json", cells + list(refs.values()) + ([floor] if floor else []))

    table = {(r["sampler"], r["schedule"], r["nfe_calls"]): r["metrics"] for r in cells}
    print(f"\nNote-histogram Hellinger distance of the generated {256 - args.prefix} steps, mean ± standard error "
          f"over {cells[0]['num_samples']} held-out tunes (one continuation each). NFE = model calls per sequence.")
    for metric, title in METRICS.items():
        print(f"\n{title} ({metric}):")
        print(f"{'sampler':<13}{'schedule':<10}" + "".join(f"{'NFE ' + str(n):>16}" for n in args.nfes))
        for sampler in args.samplers:
            for schedule in SCHEDULES:
                row = [table.get((sampler, schedule, n)) for n in args.nfes]
                print(f"{sampler:<13}{schedule:<10}" + "".join(
                    f"{m[metric]:>9.4f}±{m[metric + '_se']:.4f}" if m else f"{'-':>16}" for m in row))
        for sampler in args.samplers:
            ratios = [f"NFE {n}: {table[(sampler, 'uniform', n)][metric] / table[(sampler, 'jys', n)][metric]:.2f}"
                      for n in args.nfes if (sampler, "uniform", n) in table and (sampler, "jys", n) in table]
            print(f"uniform / JYS ({sampler}): " + ", ".join(ratios))
    for sampler, r in refs.items():
        m = r["metrics"]
        print(f"\nModel quality: {sampler} uniform NFE {args.reference} (the reference) against the true continuations: "
              f"H = {m['hellinger_true']:.4f} ± {m['hellinger_true_se']:.4f}")
    if floor:
        m = floor["metrics"]
        print(f"Another held-out tune's continuation against each tune's: H = {m['hellinger_true']:.4f} ± "
              f"{m['hellinger_true_se']:.4f} ({floor['num_samples']} tunes)")
    for sampler in args.samplers:
        shape = schedule_shape(model_dir, sampler, 15)
        if shape:
            print(shape)

    fig, axes = plt.subplots(len(args.samplers), 2, figsize=(11, 4.2 * len(args.samplers)), squeeze=False)
    for row, sampler in zip(axes, args.samplers):
        for ax, (metric, title) in zip(row, METRICS.items()):
            for schedule in SCHEDULES:
                pts = [(n, table[(sampler, schedule, n)]) for n in args.nfes if (sampler, schedule, n) in table]
                if pts:
                    ax.errorbar([n for n, _ in pts], [m[metric] for _, m in pts], yerr=[m[metric + "_se"] for _, m in pts],
                                fmt="o-", color=COLORS[schedule], label=schedule, capsize=3)
            if metric == "hellinger_true" and sampler in refs:
                ax.axhline(refs[sampler]["metrics"]["hellinger_true"], color="k", ls=":", label=f"NFE {args.reference}")
            if metric == "hellinger_true" and floor:
                ax.axhline(floor["metrics"]["hellinger_true"], color="gray", ls="--", label="another tune")
            ax.set_xscale("log", base=2)
            ax.set_xticks(args.nfes, [str(n) for n in args.nfes])
            ax.set_xlabel("NFE (model calls per sequence)")
            ax.set_ylabel(f"Hellinger distance, {title}")
            ax.set_title(f"{args.experiment}, {args.model}, {sampler}", fontsize=10)
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
    save_figure(fig, out / "figures" / "hellinger_vs_nfe.png")
    rolls = out / "figures" / f"rolls_nfe{args.roll_nfe}.png"
    drawn = piano_rolls(cells, args.samplers[0], args.roll_nfe, args.prefix, rolls)
    print(f"\n{len(cells) + len(refs)} records -> {out / 'results.json'}; plot -> {out / 'figures' / 'hellinger_vs_nfe.png'}"
          + (f"; piano rolls -> {rolls}" if drawn else ""))


if __name__ == "__main__":
    main()
