"""The figures: one drawing of a metric against NFE for every experiment (the paper's Figs. 5, 6 and 8 are three
uses of it), the schedules (Fig. 9), the KLUB-samples ablation (Fig. 10), and the per-experiment extras (piano
rolls, image sheets). `figures.ipynb`'s cells only call these; `python -m results figure EXPERIMENT` and
`python -m results notebook` are the command-line doors.

Each paper figure reads runs/<experiment>/results.json (written by `python -m results table`) and the JYS schedule
files runs/<experiment>/<model>/schedules/<sampler>-jys-nfe<N>.json. A figure whose runs are missing prints the
command that makes them and returns None, so the notebook goes on with the others. NFE on every x axis is model
calls per sequence (`nfe_calls`), on a log scale.
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from common.io import atomic_write_bytes, save_figure
from results.records import ResultsError, load_results, results_path
from results.specs import SCHEDULES, Metric, Spec, spec_for
from results.tables import rows_of

ROOT = Path(__file__).resolve().parents[1]

# line style and marker, and colour (one sampler), of each schedule of results.specs.SCHEDULES
STYLES = {"uniform": (":", "s"), "cosine": ("--", "^"), "jys": ("-", "o"), "jys-hierarchy": ("-.", "D"),
          "beta": ("--", "v")}
COLORS = {"uniform": "tab:green", "cosine": "tab:blue", "jys": "tab:orange", "jys-hierarchy": "tab:brown",
          "beta": "tab:purple"}
MAKERS = {"count": "bash scripts/count.sh", "digits": "bash scripts/cifar.sh", "folk": "bash scripts/piano.sh",
          "text": "bash scripts/text.sh", "ablation_klub": "bash scripts/ablation_klub.sh"}
KERNELS = (("count", "absorbing"), ("folk", "uniform"), ("digits", "Gaussian"))  # Fig. 9's panels, in its order
DIGITS_SHAPE, DIGITS_LEVELS = (1, 8, 8), 17  # sklearn's digits: one channel of 8 x 8 pixels, 17 gray levels
ABLATION_METRIC = "countdown_error"  # the CountDown error in the KLUB-samples ablation's records
REST = 128  # the folk piano rolls' rest token


def load_or_say(runs_dir: str | Path, experiment: str, figure: str) -> list[dict] | None:
    """The records of runs/<experiment>/results.json, or None after saying which command makes them."""
    path = results_path(runs_dir, experiment)
    if not path.is_file():
        print(f"{figure}: no {path}; run {MAKERS.get(experiment, 'its experiment script')} to make it")
        return None
    return load_results(path)


def nfe_axis(ax: Axes, nfes: list[int], ylabel: str, title: str, unit: str = "sequence") -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(nfes, [str(n) for n in nfes])
    ax.set_xlabel(f"NFE (model calls per {unit})")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)


def draw_metric(ax: Axes, records: list[dict], metric: Metric, model: str | None = None, unit: str = "sequence",
                title: str | None = None) -> None:
    """A metric against NFE: a line per (sampler, schedule), line style by schedule, colour by schedule (by sampler
    where the axes hold several); the mean over seeds with the standard error (one seed) or the seeds' range as
    bars. Only NFEs where the model and sampler have a JYS cell: the figures compare schedules at equal NFE, and only
    the schedules of results.specs.SCHEDULES.
    The reference and floor records, where present, are horizontal lines."""
    rows = {k: v for k, v in rows_of(records, metric, roles=("cell",)).items()
            if model in (None, k[0]) and k[2] in SCHEDULES}  # an ablation's labels (table --schedules) are tables' only
    if not any(k[2] == "jys" for k in rows):
        raise ResultsError(f"no JYS record with metric {metric.key!r}" + (f" of model {model}" if model else "")
                           + ": rerun the experiment's script")
    samplers = sorted({k[1] for k in rows})
    nfes = set()
    for (m, sampler, schedule), row in sorted(rows.items(), key=lambda kv: (kv[0][:2], SCHEDULES.index(kv[0][2]))):
        row = {n: v for n, v in row.items() if n in rows.get((m, sampler, "jys"), {})}
        if not row:
            continue
        xs = sorted(row)
        values = [[r["metrics"][metric.key] for r in row[n]] for n in xs]
        y = np.array([np.mean(v) for v in values])
        se = [row[n][0]["metrics"].get(f"{metric.key}_se") if len(row[n]) == 1 else None for n in xs]
        if all(s is not None for s in se):
            bars = np.array(se, dtype=float)
        else:
            bars = np.array([[yi - min(v), max(v) - yi] for yi, v in zip(y, values)]).T
        line, marker = STYLES[schedule]
        color = f"C{samplers.index(sampler)}" if len(samplers) > 1 else COLORS[schedule]
        ax.errorbar(xs, y, yerr=bars if np.any(bars) else None, capsize=3, ls=line, marker=marker, color=color,
                    label=f"{schedule} ({sampler})")
        nfes |= set(xs)
    for r in records:
        if metric.key in r.get("metrics", {}) and r.get("role") in ("reference", "floor"):
            label = f"NFE {r['nfe_calls']} (reference)" if r["role"] == "reference" else "held-out data"
            ax.axhline(r["metrics"][metric.key], color="k" if r["role"] == "reference" else "gray",
                       ls=":" if r["role"] == "reference" else "--", label=label)
    if metric.log:
        ax.set_yscale("log")
    judges = sorted({str(r["metrics"]["judge"]) for r in records if "judge" in r.get("metrics", {})})
    ylabel = metric.label + (f" ({', '.join(judges)})" if judges else "")
    nfe_axis(ax, sorted(nfes), ylabel, title or metric.key, unit)


def experiment_figure(records: list[dict], spec: Spec) -> Figure:
    """A panel per (model, metric) of an experiment."""
    models = sorted({r["model"] for r in records if r.get("role", "cell") == "cell"}, key=lambda m: (m == "oracle", m))
    panels = [(m, metric) for m in models for metric in spec.metrics]
    fig = Figure(figsize=(5.5 * len(panels), 4.2))
    for ax, (model, metric) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        draw_metric(ax, records, metric, model, spec.unit, f"{spec.experiment}, {model}")
    return fig


def missing_panel(ax: Axes, what: str, experiment: str) -> None:
    ax.text(0.5, 0.5, f"{what}: no runs\n({MAKERS[experiment]})", ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def fig5_count(runs_dir: str | Path = "runs") -> Figure | None:
    """Fig. 5: CountDown error against NFE, one panel per model (the trained model, then the oracle)."""
    records = load_or_say(runs_dir, "count", "Fig. 5 (CountDown)")
    return None if records is None else experiment_figure(records, spec_for("count"))


def fig6_digits(runs_dir: str | Path = "runs") -> Figure | None:
    """Fig. 6 left: digits-FID against NFE, the mean over sampling seeds (their range as bars), the floor."""
    records = load_or_say(runs_dir, "digits", "Fig. 6 (digits-FID)")
    return None if records is None else experiment_figure(records, spec_for("digits"))


def tiles(images: np.ndarray, per_row: int) -> np.ndarray:
    """[N, H, W] gray images in [0, 1] as one sheet, a white pixel between them; ink dark on white."""
    N, H, W = images.shape
    rows = -(-N // per_row)
    sheet = np.ones((rows * (H + 1), per_row * (W + 1)))
    for i, img in enumerate(images):
        r, c = divmod(i, per_row)
        sheet[r * (H + 1):r * (H + 1) + H, c * (W + 1):c * (W + 1) + W] = 1 - img
    return sheet


def samples_file(runs_dir: str | Path, record: dict) -> Path:
    """A record's samples file (records store it relative to the repository root, as the stages write it)."""
    path = Path(record["samples_file"])
    if path.is_absolute() or path.is_file():
        return path
    under_runs = Path(runs_dir) / Path(*path.parts[1:])  # runs/<experiment>/... moved under another runs dir
    return under_runs if under_runs.is_file() else ROOT / path


def image_sheet(runs_dir: str | Path, records: list[dict], nfe: int = 16, sampler: str = "tau_leaping",
                count: int = 64, shape=DIGITS_SHAPE, levels: int = DIGITS_LEVELS) -> Figure | None:
    """The first `count` images of sampling seed 0, per schedule, at one NFE (Fig. 6 right)."""
    cells = {r["schedule"]: r for r in records if r.get("role", "cell") == "cell" and r.get("sampler") == sampler
             and r.get("nfe_calls") == nfe and r.get("seed") == 0}
    schedules = [s for s in SCHEDULES if s in cells and samples_file(runs_dir, cells[s]).is_file()]
    if not schedules:
        return None
    C, H, W = shape
    fig = Figure(figsize=(9, 2.7 * len(schedules)))
    for ax, schedule in zip(fig.subplots(len(schedules), 1, squeeze=False)[:, 0], schedules):
        with np.load(samples_file(runs_dir, cells[schedule])) as f:
            x = f["samples"][:count].reshape(-1, C, H, W).astype(float) / (levels - 1)
        sheet = tiles(x[:, 0], 16) if C == 1 else np.concatenate([tiles(x[:, c], 16)[..., None] for c in range(C)], -1)
        ax.imshow(sheet if C == 1 else 1 - sheet, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{schedule}, NFE {nfe} ({sampler}, {cells[schedule]['model']})", fontsize=10)
        ax.set_axis_off()
    return fig


def fig6_digits_samples(runs_dir: str | Path = "runs", nfe: int = 16, sampler: str = "tau_leaping",
                        count: int = 64) -> Figure | None:
    """Fig. 6 right: the first `count` images of sampling seed 0 on each grid at one NFE."""
    records = load_or_say(runs_dir, "digits", "Fig. 6 (digits samples)")
    if records is None:
        return None
    fig = image_sheet(runs_dir, records, nfe, sampler, count)
    if fig is None:
        print(f"Fig. 6 (digits samples): no {sampler} samples files at NFE {nfe} under {Path(runs_dir) / 'digits'}; "
              f"run {MAKERS['digits']} to make them")
    return fig


def piano_rolls(runs_dir: str | Path, records: list[dict], nfe: int = 8, prefix: int = 32,
                tunes: int = 4) -> Figure | None:
    """A few continuations per schedule at one NFE, the given prefix in gray (the music extra)."""
    cells = {r["schedule"]: r for r in records if r.get("role", "cell") == "cell" and r.get("nfe_calls") == nfe
             and r.get("seed") == 0}
    schedules = [s for s in SCHEDULES if s in cells and samples_file(runs_dir, cells[s]).is_file()]
    if not schedules:
        return None
    fig = Figure(figsize=(4.2 * len(schedules), 1.6 * tunes))
    axes = fig.subplots(tunes, len(schedules), squeeze=False)
    for j, schedule in enumerate(schedules):
        with np.load(samples_file(runs_dir, cells[schedule])) as f:
            x = f["samples"][:tunes]
        for i in range(min(tunes, len(x))):
            ax, seq = axes[i, j], x[i].astype(float)
            seq[seq == REST] = np.nan
            steps = np.arange(len(seq))
            ax.step(steps[:prefix], seq[:prefix], where="post", color="gray", lw=2)
            ax.step(steps[prefix - 1:], seq[prefix - 1:], where="post", color=COLORS[schedule], lw=1.5)
            ax.axvline(prefix, color="k", lw=0.5, ls=":")
            ax.set_xlim(0, len(seq))
            ax.tick_params(labelsize=7)
            if i == 0:
                ax.set_title(f"{schedule}, NFE {nfe} (gray: the given prefix)", fontsize=9)
            if j == 0:
                ax.set_ylabel("MIDI pitch", fontsize=8)
    return fig


def fig8_music_text(runs_dir: str | Path = "runs") -> Figure | None:
    """Fig. 8: the note-histogram Hellinger distance to NFE-512 samples (music, left) and the generative
    perplexity with the held-out floor (text, right) against NFE; a panel without runs says so."""
    panels = [("folk", spec_for("folk").metrics[0], "Fig. 8 (music)"), ("text", spec_for("text").metrics[0], "Fig. 8 (text)")]
    loaded = [load_or_say(runs_dir, experiment, what) for experiment, _, what in panels]
    if all(records is None for records in loaded):
        return None
    fig = Figure(figsize=(11, 4.2))
    for ax, (experiment, metric, what), records in zip(fig.subplots(1, 2), panels, loaded):
        if records is None:
            missing_panel(ax, what, experiment)
            continue
        models = ", ".join(sorted({r["model"] for r in records if r.get("role", "cell") == "cell"}))
        draw_metric(ax, records, metric, title=f"{experiment}, {models}")
    return fig


def jys_schedules(runs_dir: str | Path, experiment: str) -> list[dict]:
    """The JYS schedule files of one model and sampler of an experiment: the trained model before the oracle
    (the paper shows trained models), and the sampler with the most files; ordered by NFE."""
    found = [json.loads(p.read_text()) | {"model_dir": p.parent.parent.name}  # runs/<exp>/<model>/schedules/
             for p in sorted((Path(runs_dir) / experiment).glob("*/schedules/*-jys-nfe*.json"))]
    if not found:
        return []
    model = min({s["model_dir"] for s in found}, key=lambda m: (m == "oracle", m))
    mine = [s for s in found if s["model_dir"] == model]
    counts = {k: sum(s["sampler"] == k for s in mine) for k in {s["sampler"] for s in mine}}
    sampler = min(counts, key=lambda k: (-counts[k], k))
    return sorted((s for s in mine if s["sampler"] == sampler), key=lambda s: s["nfe"])


def fig9_schedules(runs_dir: str | Path = "runs") -> Figure | None:
    """Fig. 9: the JYS step sizes t_i - t_{i+1} against t_i, one panel per kernel (absorbing: CountDown,
    uniform: folk music, Gaussian: digits), one line per NFE."""
    found = {experiment: jys_schedules(runs_dir, experiment) for experiment, _ in KERNELS}
    for experiment, kernel in KERNELS:
        if not found[experiment]:
            print(f"Fig. 9 ({kernel} kernel): no JYS schedule under {Path(runs_dir) / experiment}; "
                  f"run {MAKERS[experiment]} to make them")
    if not any(found.values()):
        return None
    fig = Figure(figsize=(15, 4.2))
    for ax, (experiment, kernel) in zip(fig.subplots(1, len(KERNELS)), KERNELS):
        schedules = found[experiment]
        if not schedules:
            missing_panel(ax, f"{kernel} kernel", experiment)
            continue
        for i, s in enumerate(schedules):
            t = np.asarray(s["times"])
            ax.plot(t[:-1], t[:-1] - t[1:], "o-", ms=3, color=f"C{i}", label=f"{s['nfe']} steps")
        first = schedules[0]
        ax.set_yscale("log")
        ax.set_xlabel("time t_i (0: data, 1: noise)")
        ax.set_ylabel("step size t_i - t_{i+1}")
        ax.set_title(f"{first['process']['kernel']['name']} kernel: {experiment}, {first['model_dir']}, "
                     f"{first['sampler']}", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    return fig


def fig10_klub_samples(runs_dir: str | Path = "runs", nfes: tuple[int, ...] = (8, 16),
                       experiment: str = "ablation_klub") -> Figure | None:
    """Fig. 10: the CountDown error of JYS schedules searched with K KLUB samples against K, at a few NFEs;
    the mean over search seeds, their range shaded and each seed a dot; the uniform grid dashed."""
    records = load_or_say(runs_dir, experiment, "Fig. 10 (KLUB-samples ablation)")
    if records is None:
        return None
    by_line: dict[tuple, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    uniform: dict[tuple, float] = {}
    for r in records:
        if ABLATION_METRIC not in r.get("metrics", {}) or "nfe_calls" not in r:
            raise ResultsError(f"ablation record {r.get('model')}/{r.get('schedule')} nfe {r.get('nfe')} has no "
                               f"metric {ABLATION_METRIC!r} or no nfe_calls: rerun {MAKERS['ablation_klub']}")
        if r["nfe_calls"] not in nfes:
            continue
        line = (r["model"], r["sampler"], r["nfe_calls"])
        if r.get("schedule") == "uniform":
            uniform[line] = r["metrics"][ABLATION_METRIC]
        elif "klub_samples" in r and "search_seed" in r:
            by_line[line][r["klub_samples"]].append(r["metrics"][ABLATION_METRIC])
        else:
            raise ResultsError(f"ablation record {r.get('model')}/{r.get('schedule')} nfe {r.get('nfe')} has no "
                               f"klub_samples or search_seed: rerun {MAKERS['ablation_klub']}")
    if not by_line:
        raise ResultsError(f"{results_path(runs_dir, experiment)} has no JYS record at NFE {list(nfes)}")
    fig = Figure(figsize=(5.5, 4.2))
    ax = fig.subplots()
    for i, (line, row) in enumerate(sorted(by_line.items())):
        model, sampler, nfe = line
        ks = sorted(row)
        ax.plot(ks, [np.mean(row[k]) for k in ks], "o-", color=f"C{i}", label=f"NFE {nfe} ({model}, {sampler})")
        ax.fill_between(ks, [min(row[k]) for k in ks], [max(row[k]) for k in ks], color=f"C{i}", alpha=0.2)
        for k in ks:
            ax.plot([k] * len(row[k]), row[k], ".", color=f"C{i}", alpha=0.5)
        if line in uniform:
            ax.axhline(uniform[line], color=f"C{i}", linestyle="--", linewidth=1)
    ax.set_xscale("log", base=2)
    ks = sorted({k for row in by_line.values() for k in row})
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_yscale("log")
    ax.set_xlabel("KLUB samples per evaluation in the search")
    ax.set_ylabel("CountDown error (dashed: uniform grid)")
    seeds = sorted({r["search_seed"] for r in records if "search_seed" in r})
    ax.set_title(f"KLUB-samples ablation, search seeds {seeds}", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    return fig


def folk_rolls(runs_dir: str | Path = "runs", nfe: int = 8) -> Figure | None:
    """Piano rolls of a few folk continuations per schedule at one NFE (the music page's figure)."""
    records = load_or_say(runs_dir, "folk", "the folk piano rolls")
    return None if records is None else piano_rolls(runs_dir, records, nfe, prefix=32)


FIGURES = {"fig5_count.png": fig5_count, "fig6_digits.png": fig6_digits,
           "fig6_digits_samples.png": fig6_digits_samples, "fig8_music_text.png": fig8_music_text,
           "fig9_schedules.png": fig9_schedules, "fig10_klub_samples.png": fig10_klub_samples,
           "folk_rolls_nfe8.png": folk_rolls}


def save_all(runs_dir: str | Path = "runs", out_dir: str | Path = "docs") -> list[Path]:
    """Write the PNG of every figure whose runs exist under out_dir (atomically); the others say what to run."""
    written = []
    for name, draw in FIGURES.items():
        fig = draw(runs_dir)
        if fig is not None:
            written.append(save_figure(fig, Path(out_dir) / name))
            print(f"wrote {written[-1]}")
    return written


def execute_notebook(notebook: Path, runs_dir: str | Path, out_dir: str | Path, save_to: Path | None = None,
                     timeout: int = 600):
    """Run the notebook headless from the repository root with FIGURES_RUNS and FIGURES_OUT set, and write it
    with its outputs to save_to (default: in place). A cell that raises fails the run."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(notebook, as_version=4)
    env = {**os.environ, "FIGURES_RUNS": str(runs_dir), "FIGURES_OUT": str(out_dir)}
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT)}}).execute(env=env)
    atomic_write_bytes(save_to or notebook, nbformat.writes(nb).encode())
    return nb
