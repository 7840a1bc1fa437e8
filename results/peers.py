"""The peers table at equal model calls: every sampler × schedule cell of scripts/peers.sh, with standard errors,
the best cell at each budget, and JYS's best combination against the best peer alone; runs/peers/results.json
and runs/peers/figures/error_vs_calls.png (`python -m results peers --runs-of count:oracle count:count-sedd
--samplers euler kgillespie confidence dus eb --nfes 4 8 16 32`).

CountDown's error is the share of broken transitions; its standard error is over sequences (each sequence's
share, N of them). Text's generative perplexity is one corpus-level number per cell (no standard error).
The "best" lines compare minima over cells, so their ± (of the two cells alone) understates the selection.
EB's cells stand under the budget their γ was tuned to and show the calls they spent.
"""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from common.io import atomic_write_json, save_figure
from results.records import ResultsError, read_metrics

ROOT = Path(__file__).resolve().parents[1]

# the peers' own schedules (LLaDA, MaskGIT; DUS; the Beta mask schedule of arXiv 2509.13866 on the Euler step; ReMDM's
# loop on its own clock, uniform steps; KLASS on LLaDA's uniform counts)
OWN = {"confidence": ("uniform", "cosine"), "dus": ("geometric",), "euler": ("beta",), "remdm": ("uniform",),
       "klass": ("uniform",)}
METRIC = {"count": "countdown_error", "text": "gen_ppl"}


def sequence_errors(samples_file: Path) -> np.ndarray:
    """Each sequence's share of broken CountDown transitions (metrics.sequences.countdown_error per row)."""
    with np.load(samples_file) as f:
        x = f["samples"].astype(np.int64)
    a, b = x[:, :-1], x[:, 1:]
    return ((a > 0) & (b != a - 1)).mean(1)


def collect(runs: Path, exp: str, model: str, samplers: list[str], nfes: list[int]) -> list[dict]:
    gammas = {}  # EB's label → the budgets its γ was tuned to (two budgets can land on one γ)
    tuned = runs / exp / model / "eb_gamma.json"
    if "eb" in samplers and tuned.is_file():
        for r in json.loads(tuned.read_text())["budgets"]:
            if int(r["budget"]) in nfes:
                gammas.setdefault(f"gamma{r['gamma']:g}", []).append(int(r["budget"]))
    records = []
    for r in read_metrics(runs, exp, model):
        path = runs / exp / model / "metrics" / r["metrics_file"]
        if (r.get("sampler") not in samplers or r.get("seed") != 0 or "-seed" in path.stem or "-margin" in path.stem
                or r.get("order_sha256")):  # DUS in a user's order (unmask.order): not the peer DUS
            continue
        if r["sampler"] == "eb":
            if r["schedule"] not in gammas:
                continue
            for budget in gammas[r["schedule"]][1:]:
                records.append(with_value(exp, {**r, "budget": budget}, path))
            r["budget"] = gammas[r["schedule"]][0]
        elif r["schedule"] in ("uniform", "cosine", "jys", "geometric", "beta") and r["nfe_calls"] in nfes:
            r["budget"] = r["nfe_calls"]
        else:
            continue
        records.append(with_value(exp, r, path))
    for r in records:
        if r["sampler"] == "eb" and abs(r["model_calls"] - r["budget"]) > 0.05 * r["budget"]:
            print(f"warning: {exp} / {model} / eb {r['schedule']} spent {r['model_calls']:.2f} calls, more than 5% "
                  f"from its budget {r['budget']}: rerun scripts/eb_tune.py with a larger --pilot", file=sys.stderr)
    return records


def with_value(exp: str, r: dict, path: Path) -> dict:
    """The record with its metric value and, for CountDown, the standard error over sequences."""
    value = r["metrics"][METRIC[exp]]
    r["value"] = value
    r["value_se"] = None
    if exp == "count":
        samples = Path(r["samples_file"])
        errors = sequence_errors(samples if samples.is_absolute() else ROOT / samples)
        if not math.isclose(errors.mean(), value, rel_tol=1e-9, abs_tol=1e-12):
            raise ResultsError(f"{path}: its samples file gives error {errors.mean()} but the record says {value}: "
                     "rerun the metrics stage")
        r["value_se"] = float(errors.std(ddof=1) / math.sqrt(len(errors)))
    return r


def row_name(r: dict) -> str:
    return f"{r['sampler']} / {'γ tuned' if r['sampler'] == 'eb' else r['schedule']}"


def fmt(r: dict | None, exp: str) -> str:
    if r is None:
        return "-"
    v = f"{r['value']:.4f}" if exp == "count" else f"{r['value']:.1f}"
    if r["value_se"] is not None:
        v += f" ± {r['value_se']:.4f}"
    if r["sampler"] == "eb":
        v += f" ({r['model_calls']:.1f} calls)"
    return v


def pair_table(exp: str, model: str, records: list[dict], nfes: list[int]) -> str:
    """One pair's Markdown table at equal model calls and, per budget, the best cell and JYS's best combination
    against the best peer alone (records as `collect` returns them, each with value, value_se and budget)."""
    rows = {}
    for r in records:
        rows.setdefault(row_name(r), {})[r["budget"]] = r
    what = "CountDown error ± s.e." if exp == "count" else "generative perplexity"
    lines = [f"{exp} / {model}: {what} at equal model calls per sequence (EB: its mean calls in brackets)", "",
             "| sampler / schedule | " + " | ".join(f"{n} calls" for n in nfes) + " |", "|---|" + "---|" * len(nfes)]
    lines += [f"| {name} | " + " | ".join(fmt(rows[name].get(n), exp) for n in nfes) + " |" for name in sorted(rows)]
    lines.append("")
    for n in nfes:
        cells = [r for r in records if r["budget"] == n]
        if not cells:
            continue
        best = min(cells, key=lambda r: r["value"])
        jys = [r for r in cells if r["schedule"] == "jys"]
        peers = [r for r in cells if r["sampler"] == "eb" or r["schedule"] in OWN.get(r["sampler"], ())]
        line = f"- {n} calls: best {row_name(best)} {fmt(best, exp)}"
        if jys and peers:
            bj, bp = min(jys, key=lambda r: r["value"]), min(peers, key=lambda r: r["value"])
            line += f"; best JYS combination {row_name(bj)} {fmt(bj, exp)} vs best peer alone {row_name(bp)} {fmt(bp, exp)}"
            if bj["value"] > 0:
                line += f": ratio peer/JYS {bp['value'] / bj['value']:.2f}"
            if bj["value_se"] is not None:
                diff = bp["value"] - bj["value"]
                se = math.hypot(bj["value_se"], bp["value_se"])
                line += f", difference {diff:+.4f} ± {se:.4f}" + (f" ({diff / se:+.1f} s.e.)" if se > 0 else "")
        lines.append(line)
    return "\n".join(lines)


def report(runs: Path, runs_of: list[str], samplers: list[str], nfes: list[int]) -> None:
    """Print each pair's table and the best lines; write runs/peers/results.json and the figure."""
    everything, panels = [], []
    for pair in runs_of:
        exp, model = pair.split(":")
        records = collect(runs, exp, model, samplers, nfes)
        if not records:
            raise ResultsError(f"no metrics records under {runs / exp / model / 'metrics'}: run bash scripts/peers.sh first")
        everything += records
        panels.append((exp, model, records))
        print("\n" + pair_table(exp, model, records, nfes))
    out = runs / "peers"
    atomic_write_json(out / "results.json", everything)
    fig = Figure(figsize=(5.5 * len(panels) + 2, 4.6))
    axes = fig.subplots(1, len(panels), squeeze=False)
    colors = {"euler": "tab:gray", "kgillespie": "tab:green", "confidence": "tab:red", "dus": "tab:purple",
              "eb": "tab:blue", "remdm": "tab:brown", "klass": "tab:olive"}
    styles = {"uniform": "o-", "cosine": "s--", "jys": "^-", "geometric": "D:", "gamma": "v-.", "beta": "P:"}
    for ax, (exp, model, records) in zip(axes[0], panels):
        lines = {}
        for r in records:
            lines.setdefault((r["sampler"], "gamma" if r["sampler"] == "eb" else r["schedule"]), []).append(r)
        for (sampler, schedule), rs in sorted(lines.items()):
            rs = sorted(rs, key=lambda r: r["model_calls"])
            ax.plot([r["model_calls"] for r in rs], [max(r["value"], 1e-5) for r in rs], styles[schedule],
                    color=colors.get(sampler, "k"), lw=2.2 if schedule == "jys" else 1.2, ms=4,
                    label=f"{sampler} / {'γ tuned' if sampler == 'eb' else schedule}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("model calls per sequence")
        ax.set_ylabel("CountDown error" if exp == "count" else "generative perplexity")
        ax.set_title(f"{exp}, {model}")
        ax.grid(True, which="both", alpha=0.3)
    axes[0][-1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))  # outside: lines fill the axes
    save_figure(fig, out / "figures" / "error_vs_calls.png")
    print(f"\n{len(everything)} records -> {out / 'results.json'}; figure -> {out / 'figures' / 'error_vs_calls.png'}")
