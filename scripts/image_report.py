"""Collect the image metrics into one table, runs/<experiment>/results.json, the figure
runs/<experiment>/figures/fid_vs_nfe.png (JYS Fig. 6 left) and a grid of samples per schedule at one
NFE, runs/<experiment>/figures/samples_nfe<N>.png (Fig. 6 right)."""
import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from common.io import atomic_write_json, save_figure

ROOT = Path(__file__).resolve().parents[1]

SCHEDULES = ("uniform", "cosine", "jys")
COLORS = {"uniform": "tab:green", "cosine": "tab:blue", "jys": "tab:orange"}


def load_records(out: Path, model: str, samplers, nfes, quality, metric: str) -> list[dict]:
    records = []
    for path in sorted((out / model / "metrics").glob("*.json")):
        r = json.loads(path.read_text())
        in_grid = r["sampler"] in samplers and r["nfe_calls"] in nfes and r["schedule"] in SCHEDULES
        is_quality = r["sampler"] == samplers[0] and r["schedule"] == "uniform" and r["nfe_calls"] == quality
        if (in_grid or is_quality) and metric in r["metrics"]:
            records.append(r)
    if not records:
        sys.exit(f"no {metric} records under {out / model / 'metrics'}: run the stages first (bash scripts/cifar.sh)")
    for what, values in (("model identities", {json.dumps(r.get("model_identity"), sort_keys=True) for r in records}),
                         ("sample counts", {r["num_samples"] for r in records})):
        if len(values) > 1:
            sys.exit(f"metrics records under {out / model} come from {len(values)} {what} ({sorted(map(str, values))}): "
                     "one table holds one of each; rerun bash scripts/cifar.sh, or move the stale files away")
    return records


def sample_grid(records, sampler: str, nfe: int, shape, levels: int, path: Path, per_row: int = 16, rows: int = 4):
    chosen = {r["schedule"]: r for r in records if r["sampler"] == sampler and r["nfe_calls"] == nfe and r["seed"] == 0}
    schedules = [s for s in SCHEDULES if s in chosen]
    fig, axes = plt.subplots(len(schedules), 1, figsize=(per_row * 0.55, rows * 0.62 * len(schedules) + 0.4),
                             squeeze=False)
    C, H, W = shape
    for ax, schedule in zip(axes[:, 0], schedules):
        with np.load(chosen[schedule]["samples_file"]) as f:
            x = f["samples"][: per_row * rows].reshape(-1, C, H, W).transpose(0, 2, 3, 1).astype(float) / (levels - 1)
        tiles = np.ones((rows * (H + 1), per_row * (W + 1), C))
        for i, img in enumerate(x):
            r, c = divmod(i, per_row)
            tiles[r * (H + 1):r * (H + 1) + H, c * (W + 1):c * (W + 1) + W] = 1 - img if C == 1 else img
        ax.imshow(tiles.squeeze(-1) if C == 1 else tiles, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{schedule}, NFE {nfe}", fontsize=9)
        ax.axis("off")
    save_figure(fig, path)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--experiment", default="digits")
    ap.add_argument("--model", default="digits-tauldr")
    ap.add_argument("--samplers", nargs="+", required=True)
    ap.add_argument("--nfes", nargs="+", type=int, required=True)
    ap.add_argument("--quality", type=int, default=256, help="NFE of the uniform-grid model-quality cell")
    ap.add_argument("--metric", default="digits_fid", choices=("digits_fid", "fid"))
    ap.add_argument("--grid-nfe", type=int, default=16, help="the NFE of the sample grids")
    ap.add_argument("--shape", nargs=3, type=int, default=(1, 8, 8), help="C H W")
    ap.add_argument("--levels", type=int, default=17, help="states per pixel")
    ap.add_argument("--runs", default=str(ROOT / "runs"))
    args = ap.parse_args()
    out = Path(args.runs) / args.experiment
    records = load_records(out, args.model, args.samplers, args.nfes, args.quality, args.metric)
    floor_path = out / "floor.json"
    floor = json.loads(floor_path.read_text()) if floor_path.is_file() else None
    atomic_write_json(out / "results.json", records + ([floor] if floor else []))

    label = {"digits_fid": "digits-FID", "fid": "FID"}[args.metric]
    by_seed = defaultdict(lambda: defaultdict(dict))
    for r in records:
        by_seed[(r["sampler"], r["schedule"])][r["nfe_calls"]][r["seed"]] = r["metrics"][args.metric]
    table = {key: {n: float(np.mean(list(seeds.values()))) for n, seeds in row.items()} for key, row in by_seed.items()}
    seeds = sorted({r["seed"] for r in records})
    print(f"\n{label} against the training split, {records[0]['num_samples']} samples per cell, mean over sampling "
          f"seeds {seeds} (each seed's value in seeds.txt beside results.json). NFE = model calls per image.")
    nfes = sorted(set(args.nfes) | {args.quality})
    print(f"{'sampler':<13}{'schedule':<10}" + "".join(f"{'NFE ' + str(n):>10}" for n in nfes))
    for (sampler, schedule), row in sorted(table.items()):
        print(f"{sampler:<13}{schedule:<10}" + "".join(f"{row[n]:>10.2f}" if n in row else f"{'-':>10}" for n in nfes))
    for sampler in args.samplers:
        u, j = table.get((sampler, "uniform"), {}), table.get((sampler, "jys"), {})
        ratios = [f"NFE {n}: {u[n] / j[n]:.2f}" for n in args.nfes if n in u and n in j]
        if ratios:
            print(f"uniform / JYS ({sampler}): " + ", ".join(ratios))
    lines = [f"{sampler} {schedule} NFE {n}: " + ", ".join(f"seed {k} {v:.2f}" for k, v in sorted(row[n].items()))
             for (sampler, schedule), row in sorted(by_seed.items()) for n in sorted(row)]
    (out / "seeds.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if floor:
        print(f"held-out images (the floor): {floor['metrics'][args.metric]:.2f}, {floor['num_samples']} images")

    fig, axes = plt.subplots(1, len(args.samplers), figsize=(5.5 * len(args.samplers), 4.2), squeeze=False)
    for ax, sampler in zip(axes[0], args.samplers):
        for schedule in SCHEDULES:
            row = {n: v for n, v in table.get((sampler, schedule), {}).items() if n in args.nfes}
            if row:
                xs = sorted(row)
                ax.plot(xs, [row[n] for n in xs], "o-", color=COLORS[schedule], label=schedule)
        if floor:
            ax.axhline(floor["metrics"][args.metric], color="gray", ls="--", label="held-out images")
        ax.set_xscale("log", base=2)
        ax.set_xticks(args.nfes, [str(n) for n in args.nfes])
        ax.set_xlabel("NFE (model calls per image)")
        ax.set_ylabel(label)
        ax.set_title(f"{args.experiment}, {args.model}, {sampler}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(fig, out / "figures" / "fid_vs_nfe.png")
    grid = out / "figures" / f"samples_nfe{args.grid_nfe}.png"
    sample_grid(records, args.samplers[0], args.grid_nfe, args.shape, args.levels, grid)
    print(f"\n{len(records)} records -> {out / 'results.json'}; plot -> {out / 'figures' / 'fid_vs_nfe.png'}; grid -> {grid}")


if __name__ == "__main__":
    main()
