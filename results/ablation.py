"""The KLUB-samples ablation's table, runs/ablation_klub/results.json and its figure (Fig. 10), from the metrics
files that scripts/ablation_klub.sh leaves under runs/ablation_klub/{uniform,k<K>-s<seed>}/count/<model>/metrics/."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from common.io import atomic_write_json, save_figure
from results.figures import ABLATION_METRIC, fig10_klub_samples
from results.records import ResultsError


def read(path: Path) -> dict:
    if not path.is_file():
        raise ResultsError(f"no file at {path}: run bash scripts/ablation_klub.sh first")
    return json.loads(path.read_text())


def table(records: list[dict]) -> str:
    """The ablation's Markdown table: a row per model and NFE (model calls), the uniform grid's error, and at each K
    the mean over search seeds with their min-max and number."""
    searched = [r for r in records if "klub_samples" in r]
    uniform = {(r["model"], r["nfe_calls"]): r["metrics"][ABLATION_METRIC] for r in records
               if r.get("schedule") == "uniform"}
    ks = sorted({r["klub_samples"] for r in searched})
    lines = ["| model | NFE | uniform | " + " | ".join(f"K = {k}" for k in ks) + " |",
             "|---|---|---|" + "---|" * len(ks)]
    for model, nfe in sorted({(r["model"], r["nfe_calls"]) for r in searched}):
        cells = []
        for k in ks:
            v = [r["metrics"][ABLATION_METRIC] for r in searched
                 if (r["model"], r["nfe_calls"], r["klub_samples"]) == (model, nfe, k)]
            cells.append(f"{np.mean(v):.4f} ({min(v):.4f}-{max(v):.4f}, {len(v)})" if v else "-")
        base = f"{uniform[model, nfe]:.4f}" if (model, nfe) in uniform else "-"
        lines.append(f"| {model} | {nfe} | {base} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(out: Path, nfes: list[int]) -> None:
    records = []
    for tree in sorted(out.glob("k*-s*")):  # every (K, search seed) that a run of the script made, for any model
        for nfe in nfes:
            for path in sorted(tree.glob(f"count/*/metrics/euler-jys-girsanov-hierarchy-nfe{nfe - 1}.json")):
                r = read(path)
                schedule = read(path.parents[1] / "schedules" / path.name)
                if f"k{schedule['num_samples']}-s{schedule['seed']}" != tree.name:
                    raise ResultsError(f"{path.parents[1] / 'schedules' / path.name} was searched with "
                                       f"{schedule['num_samples']} samples and seed {schedule['seed']}, not as "
                                       f"{tree.name} says; rerun bash scripts/ablation_klub.sh")
                records.append({**r, "search_seed": schedule["seed"], "klub_samples": schedule["num_samples"],
                                "times": schedule["times"]})
    if not records:
        raise ResultsError(f"no ablation cells under {out}: run bash scripts/ablation_klub.sh first")
    models = sorted({r["model"] for r in records})
    uniform = {(m, nfe): read(out / "uniform" / "count" / m / "metrics" / f"euler-uniform-nfe{nfe - 1}.json")
               for m in models for nfe in nfes}
    atomic_write_json(out / "results.json", records + list(uniform.values()))  # the uniform grid: Fig. 10's baseline
    print(f"CountDown error ({ABLATION_METRIC}) of Euler on JYS schedules searched with K KLUB samples: the mean over "
          f"search seeds (min-max, number of seeds), and the uniform grid")
    print(table(records + list(uniform.values())))
    fig = fig10_klub_samples(out.parent, tuple(nfes), experiment=out.name)
    path = save_figure(fig, out / "figures" / "error_vs_klub_samples.png")
    print(f"-> {out / 'results.json'}, {path}")
