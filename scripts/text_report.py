"""Collect the text metrics into one table, runs/<experiment>/results.json, the figure
runs/<experiment>/figures/genppl_vs_nfe.png (JYS Fig. 8 right) and decoded samples under
runs/<experiment>/samples/ (the first few of each cell)."""
import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import matplotlib
import numpy as np
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from common.io import atomic_write_bytes, atomic_write_json, save_figure
from metrics.text import TextTokenizer

ROOT = Path(__file__).resolve().parents[1]

SCHEDULES = ("uniform", "cosine", "jys")


def load_records(out: Path, model: str, samplers, nfes, quality) -> list[dict]:
    records = []
    for path in sorted((out / model / "metrics").glob("*.json")):
        r = json.loads(path.read_text())
        in_grid = r["sampler"] in samplers and r["nfe_calls"] in nfes and r["schedule"] in SCHEDULES
        is_quality = r["sampler"] == "euler" and r["schedule"] == "uniform" and r["nfe_calls"] == quality
        if in_grid or is_quality:
            records.append(r)
    if not records:
        sys.exit(f"no metrics records under {out / model / 'metrics'}: run the stages first (bash scripts/text.sh)")
    for what, values in (("model identities", {json.dumps(r.get("model_identity"), sort_keys=True) for r in records}),
                         ("judges", {r["metrics"].get("judge") for r in records}),
                         ("sample counts", {r["num_samples"] for r in records})):
        if len(values) > 1:
            sys.exit(f"metrics records under {out / model} come from {len(values)} {what} ({sorted(map(str, values))}): "
                     "one table holds one of each; rerun bash scripts/text.sh, or move the stale files away")
    return records


def write_samples(records, tokenizer: TextTokenizer, out: Path, per_cell: int) -> None:
    for r in records:
        with np.load(r["samples_file"]) as f:
            samples = torch.from_numpy(f["samples"][:per_cell].astype(np.int64))
        texts = tokenizer.decode(samples)
        body = "".join(f"===== sample {i} =====\n{t}\n" for i, t in enumerate(texts))
        name = f"{r['sampler']}-{r['schedule']}-nfe{r['nfe_calls']}.txt"
        atomic_write_bytes(out / "samples" / name, body.encode())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--experiment", default="text")
    ap.add_argument("--model", default="text-sedd")
    ap.add_argument("--samplers", nargs="+", required=True)
    ap.add_argument("--nfes", nargs="+", type=int, required=True)
    ap.add_argument("--quality", type=int, default=256, help="NFE of the uniform-grid model-quality cell")
    ap.add_argument("--tokenizer", default=str(ROOT / "weights/text-sedd/tokenizer.json"))
    ap.add_argument("--vocab", type=int, default=4096, help="the model's data tokens (experiment.vocab)")
    ap.add_argument("--samples-per-cell", type=int, default=4)
    ap.add_argument("--runs", default=str(ROOT / "runs"))
    args = ap.parse_args()
    out = Path(args.runs) / args.experiment
    records = load_records(out, args.model, args.samplers, args.nfes, args.quality)
    floor_path = out / "floor.json"
    floor = json.loads(floor_path.read_text()) if floor_path.is_file() else None
    if floor and floor["metrics"].get("judge") != records[0]["metrics"].get("judge"):
        sys.exit(f"{floor_path} was scored by judge {floor['metrics'].get('judge')!r}, the samples by "
                 f"{records[0]['metrics'].get('judge')!r}: rerun bash scripts/text.sh")
    tokenizer = TextTokenizer(args.tokenizer)
    tokenizer.check_vocab(args.vocab)
    atomic_write_json(out / "results.json", records + ([floor] if floor else []))
    write_samples(records, tokenizer, out, args.samples_per_cell)

    table = defaultdict(dict)
    for r in records:
        table[(r["sampler"], r["schedule"])][r["nfe_calls"]] = r["metrics"]
    judge = records[0]["metrics"].get("judge")
    print(f"\nGenerative perplexity under {judge} (entropy of the samples' tokens in nats), "
          f"{records[0]['num_samples']} samples per cell. NFE = model calls per sequence.")
    nfes = sorted(set(args.nfes) | {args.quality})
    print(f"{'sampler':<12}{'schedule':<10}" + "".join(f"{'NFE ' + str(n):>16}" for n in nfes))
    for (sampler, schedule), row in sorted(table.items()):
        cells = "".join(f"{row[n]['gen_ppl']:>9.1f} ({row[n]['entropy']:.2f})" if n in row else f"{'-':>16}"
                        for n in nfes)
        print(f"{sampler:<12}{schedule:<10}{cells}")
    for sampler in args.samplers:
        u, j = table.get((sampler, "uniform"), {}), table.get((sampler, "jys"), {})
        ratios = [f"NFE {n}: {u[n]['gen_ppl'] / j[n]['gen_ppl']:.2f}" for n in args.nfes if n in u and n in j]
        if ratios:
            print(f"uniform / JYS ({sampler}): " + ", ".join(ratios))
    if floor:
        print(f"held-out text (the floor): {floor['metrics']['gen_ppl']:.1f} ({floor['metrics']['entropy']:.2f}), "
              f"{floor['num_samples']} windows")

    fig, axes = plt.subplots(1, len(args.samplers), figsize=(5.5 * len(args.samplers), 4.2), squeeze=False)
    colors = {"uniform": "tab:green", "cosine": "tab:blue", "jys": "tab:orange"}
    for ax, sampler in zip(axes[0], args.samplers):
        for schedule in SCHEDULES:
            row = {n: m for n, m in table.get((sampler, schedule), {}).items() if n in args.nfes}
            if row:
                xs = sorted(row)
                ax.plot(xs, [row[n]["gen_ppl"] for n in xs], "o-", color=colors[schedule], label=schedule)
        if floor:
            ax.axhline(floor["metrics"]["gen_ppl"], color="gray", ls="--", label="held-out text")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(args.nfes, [str(n) for n in args.nfes])
        ax.set_xlabel("NFE (model calls per sequence)")
        ax.set_ylabel(f"generative perplexity ({judge})")
        ax.set_title(f"{args.experiment}, {args.model}, {sampler}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    save_figure(fig, out / "figures" / "genppl_vs_nfe.png")
    print(f"\n{len(records)} records -> {out / 'results.json'}; plot -> {out / 'figures' / 'genppl_vs_nfe.png'}; "
          f"samples -> {out / 'samples'}")


if __name__ == "__main__":
    main()
