"""The paper's figures from the runs, for figures.ipynb (whose cells only call these) and `make figures`.

Each figure reads what the experiment scripts leave under runs/: runs/<experiment>/results.json (records with
experiment, model, sampler, schedule, nfe, nfe_calls, num_samples, seed, metrics{...}) and the JYS schedule files
runs/<experiment>/<model>/schedules/<sampler>-jys-nfe<N>.json. A figure whose runs are missing prints the
command that makes them and returns None, so the notebook goes on with the others. NFE on every x axis is model
calls per sequence (`nfe_calls`), on a log scale, as in the report scripts' tables.

    python scripts/figures.py [--notebook figures.ipynb] [--runs runs] [--out docs]

executes the notebook headless, in place, with FIGURES_RUNS and FIGURES_OUT set from --runs and --out.
"""
from __future__ import annotations

import argparse
import json
import os
from collections import defaultdict
from pathlib import Path

import nbformat
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from nbclient import NotebookClient

from common.io import atomic_write_bytes, save_figure

ROOT = Path(__file__).resolve().parents[1]

SCHEDULES = ("uniform", "cosine", "jys")
STYLES = {"uniform": (":", "s"), "cosine": ("--", "^"), "jys": ("-", "o")}  # line style and marker: schedule
COLORS = {"uniform": "tab:green", "cosine": "tab:blue", "jys": "tab:orange"}  # the report scripts' colours
MAKERS = {"count": "bash scripts/count.sh", "digits": "bash scripts/cifar.sh", "folk": "bash scripts/piano.sh",
          "text": "bash scripts/text.sh", "ablation_klub": "bash scripts/ablation_klub.sh"}
KERNELS = (("count", "absorbing"), ("folk", "uniform"), ("digits", "Gaussian"))  # Fig. 9's panels, in its order
DIGITS_SHAPE, DIGITS_LEVELS = (1, 8, 8), 17  # sklearn's digits: one channel of 8 x 8 pixels, 17 gray levels
ABLATION_METRIC = "countdown_error"  # the CountDown error in the KLUB-samples ablation's records (scripts/ablation_klub_report.py)

Table = dict[tuple[str, str, str], dict[int, list[float]]]  # (model, sampler, schedule) -> NFE -> one value per seed


def load_results(runs_dir: str | Path, experiment: str, figure: str) -> list[dict] | None:
    """The records of runs/<experiment>/results.json, or None after saying which command makes them."""
    path = Path(runs_dir) / experiment / "results.json"
    if not path.is_file():
        print(f"{figure}: no {path}; run {MAKERS[experiment]} to make it")
        return None
    records = json.loads(path.read_text())
    if not isinstance(records, list):
        raise ValueError(f"{path} holds a {type(records).__name__}, expected a list of records")
    return records


def curves(records: list[dict], metric: str, experiment: str) -> Table:
    """Metric values by (model, sampler, schedule) and NFE, one per sampling seed. Only NFEs at which the
    model and sampler have a JYS record are kept: the figures compare schedules at equal NFE, and the cells
    only the uniform grid has (model quality at NFE 256, the music reference at NFE 512) are no comparison."""
    if not any(metric in r.get("metrics", {}) and r.get("schedule") == "jys" for r in records):
        raise ValueError(f"{experiment}/results.json has no JYS record with metric {metric!r}: "
                         f"rerun {MAKERS[experiment]}")
    table: Table = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r.get("schedule") not in SCHEDULES or metric not in r.get("metrics", {}):
            continue
        if "nfe_calls" not in r:
            raise ValueError(f"record {r['experiment']}/{r['model']}/{r['sampler']}/{r['schedule']} nfe {r.get('nfe')} "
                             "has no nfe_calls (it predates model calls per sequence): rerun its experiment's script")
        table[(r["model"], r["sampler"], r["schedule"])][r["nfe_calls"]].append(r["metrics"][metric])
    return {(m, s, k): {n: v for n, v in row.items() if n in table.get((m, s, "jys"), {})}
            for (m, s, k), row in table.items()}


def draw_curve(ax: Axes, row: dict[int, list[float]], **style) -> None:
    """The mean over seeds against NFE, with the seeds' range as error bars where there are several."""
    nfes = sorted(row)
    mean = np.array([np.mean(row[n]) for n in nfes])
    spread = np.array([[mean[i] - min(row[n]), max(row[n]) - mean[i]] for i, n in enumerate(nfes)]).T
    ax.errorbar(nfes, mean, yerr=spread if spread.any() else None, capsize=3, **style)


def draw_table(ax: Axes, table: Table, model: str | None = None) -> list[int]:
    """One line per (sampler, schedule): line style and marker by schedule, colour by sampler (by schedule where
    the axes hold one sampler, as in the report scripts' figures). Returns the NFEs drawn."""
    samplers = sorted({s for m, s, _ in table if model in (None, m)})
    nfes = set()
    for (m, sampler, schedule), row in sorted(table.items(), key=lambda kv: (kv[0][:2], SCHEDULES.index(kv[0][2]))):
        if row and model in (None, m):
            line, marker = STYLES[schedule]
            color = f"C{samplers.index(sampler)}" if len(samplers) > 1 else COLORS[schedule]
            draw_curve(ax, row, ls=line, marker=marker, color=color, label=f"{schedule} ({sampler})")
            nfes |= set(row)
    return sorted(nfes)


def nfe_axis(ax: Axes, nfes: list[int], ylabel: str, title: str) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(nfes, [str(n) for n in nfes])
    ax.set_xlabel("NFE (model calls per sequence)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)


def missing_panel(ax: Axes, what: str, experiment: str) -> None:
    ax.text(0.5, 0.5, f"{what}: no runs\n({MAKERS[experiment]})", ha="center", va="center", transform=ax.transAxes)
    ax.set_axis_off()


def floor_of(records: list[dict], metric: str) -> float | None:
    """The held-out data's value (the report scripts' floor record, schedule 'heldout'), if it has this metric."""
    return next((r["metrics"][metric] for r in records if r.get("schedule") == "heldout" and metric in r["metrics"]),
                None)


def fig5_count(runs_dir: str | Path = "runs") -> Figure | None:
    """Fig. 5: CountDown error against NFE, one panel per model (the trained model, then the oracle)."""
    records = load_results(runs_dir, "count", "Fig. 5 (CountDown)")
    if records is None:
        return None
    table = curves(records, "countdown_error", "count")
    models = sorted({m for m, _, _ in table}, key=lambda m: (m == "oracle", m))
    fig = Figure(figsize=(5.5 * len(models), 4.2))
    for ax, model in zip(fig.subplots(1, len(models), squeeze=False)[0], models):
        nfes = draw_table(ax, table, model)
        ax.set_yscale("log")
        nfe_axis(ax, nfes, "CountDown error (fraction of broken transitions)", f"CountDown, {model}")
    return fig


def fig6_digits(runs_dir: str | Path = "runs") -> Figure | None:
    """Fig. 6 left: digits-FID against NFE, the mean over sampling seeds (their range as bars), the floor."""
    records = load_results(runs_dir, "digits", "Fig. 6 (digits-FID)")
    if records is None:
        return None
    fig = Figure(figsize=(5.5, 4.2))
    ax = fig.subplots()
    table = curves(records, "digits_fid", "digits")
    nfes = draw_table(ax, table)
    floor = floor_of(records, "digits_fid")
    if floor is not None:
        ax.axhline(floor, color="gray", ls="--", label="held-out images")
    ax.set_yscale("log")
    seeds = sorted({r["seed"] for r in records if r.get("schedule") in SCHEDULES})
    nfe_axis(ax, nfes, "digits-FID", f"digits, {', '.join(sorted({m for m, _, _ in table}))}, seeds {seeds}")
    return fig


def tiles(images: np.ndarray, per_row: int) -> np.ndarray:
    """[N, H, W] gray images in [0, 1] as one sheet, a white pixel between them; ink dark on white."""
    N, H, W = images.shape
    rows = -(-N // per_row)
    sheet = np.ones((rows * (H + 1), per_row * (W + 1)))
    for i, img in enumerate(images):
        r, c = divmod(i, per_row)
        sheet[r * (H + 1):r * (H + 1) + H, c * (W + 1):c * (W + 1) + W] = 1 - img
    return sheet


def fig6_digits_samples(runs_dir: str | Path = "runs", nfe: int = 16, sampler: str = "tau_leaping",
                        count: int = 64) -> Figure | None:
    """Fig. 6 right: the first `count` images of sampling seed 0 on the uniform and the JYS grid at one NFE,
    from the samples files under runs/digits/<model>/samples/ (named as pipeline.runs.artifact_path names them)."""
    records = load_results(runs_dir, "digits", "Fig. 6 (digits samples)")
    if records is None:
        return None
    cells = {r["schedule"]: r for r in records if r.get("schedule") in ("uniform", "jys")
             and r.get("sampler") == sampler and r.get("nfe_calls") == nfe and r.get("seed") == 0}
    paths = {k: Path(runs_dir) / "digits" / r["model"] / "samples" / f"{sampler}-{k}-nfe{r['nfe']}.npz"
             for k, r in cells.items()}
    if set(paths) != {"uniform", "jys"} or not all(p.is_file() for p in paths.values()):
        print(f"Fig. 6 (digits samples): no {sampler} samples files of the uniform and JYS grids at NFE {nfe} under "
              f"{Path(runs_dir) / 'digits'}; run {MAKERS['digits']} to make them")
        return None
    C, H, W = DIGITS_SHAPE
    fig = Figure(figsize=(9, 5.4))
    for ax, schedule in zip(fig.subplots(2, 1), ("uniform", "jys")):
        with np.load(paths[schedule]) as f:
            x = f["samples"][:count].reshape(-1, C, H, W)[:, 0].astype(float) / (DIGITS_LEVELS - 1)
        ax.imshow(tiles(x, 16), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        ax.set_title(f"{schedule}, NFE {nfe} ({sampler}, {cells[schedule]['model']})", fontsize=10)
        ax.set_axis_off()
    return fig


def fig8_music_text(runs_dir: str | Path = "runs") -> Figure | None:
    """Fig. 8: the note-histogram Hellinger distance to NFE-512 samples (music, left) and the generative
    perplexity with the held-out floor (text, right) against NFE; a panel without runs says so."""
    panels = [("folk", "hellinger_ref", "Hellinger distance to NFE-512 samples", "Fig. 8 (music)"),
              ("text", "gen_ppl", "generative perplexity", "Fig. 8 (text)")]
    loaded = [load_results(runs_dir, experiment, what) for experiment, _, _, what in panels]
    if all(records is None for records in loaded):
        return None
    fig = Figure(figsize=(11, 4.2))
    for ax, (experiment, metric, ylabel, what), records in zip(fig.subplots(1, 2), panels, loaded):
        if records is None:
            missing_panel(ax, what, experiment)
            continue
        table = curves(records, metric, experiment)
        nfes = draw_table(ax, table)
        if metric == "gen_ppl":
            floor = floor_of(records, metric)
            if floor is not None:
                ax.axhline(floor, color="gray", ls="--", label="held-out text")
            ax.set_yscale("log")
            judges = sorted({str(r["metrics"].get("judge")) for r in records if metric in r["metrics"]})
            ylabel += f" ({', '.join(judges)})"
        nfe_axis(ax, nfes, ylabel, f"{experiment}, {', '.join(sorted({m for m, _, _ in table}))}")
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
    records = load_results(runs_dir, experiment, "Fig. 10 (KLUB-samples ablation)")
    if records is None:
        return None
    by_line: dict[tuple, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    uniform: dict[tuple, float] = {}
    for r in records:
        if ABLATION_METRIC not in r.get("metrics", {}) or "nfe_calls" not in r:
            raise ValueError(f"ablation record {r.get('model')}/{r.get('schedule')} nfe {r.get('nfe')} has no "
                             f"metric {ABLATION_METRIC!r} or no nfe_calls: rerun {MAKERS['ablation_klub']}")
        if r["nfe_calls"] not in nfes:
            continue
        line = (r["model"], r["sampler"], r["nfe_calls"])
        if r.get("schedule") == "uniform":
            uniform[line] = r["metrics"][ABLATION_METRIC]
        elif "klub_samples" in r and "search_seed" in r:
            by_line[line][r["klub_samples"]].append(r["metrics"][ABLATION_METRIC])
        else:
            raise ValueError(f"ablation record {r.get('model')}/{r.get('schedule')} nfe {r.get('nfe')} has no "
                             f"klub_samples or search_seed: rerun {MAKERS['ablation_klub']}")
    if not by_line:
        raise ValueError(f"{Path(runs_dir) / experiment / 'results.json'} has no JYS record at NFE {list(nfes)}")
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


FIGURES = {"fig5_count.png": fig5_count, "fig6_digits.png": fig6_digits,
           "fig6_digits_samples.png": fig6_digits_samples, "fig8_music_text.png": fig8_music_text,
           "fig9_schedules.png": fig9_schedules, "fig10_klub_samples.png": fig10_klub_samples}


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
                     timeout: int = 600) -> nbformat.NotebookNode:
    """Run the notebook headless from the repository root with FIGURES_RUNS and FIGURES_OUT set, and write it
    with its outputs to save_to (default: in place). A cell that raises fails the run."""
    nb = nbformat.read(notebook, as_version=4)
    env = {**os.environ, "FIGURES_RUNS": str(runs_dir), "FIGURES_OUT": str(out_dir)}
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(ROOT)}}).execute(env=env)
    atomic_write_bytes(save_to or notebook, nbformat.writes(nb).encode())
    return nb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--notebook", type=Path, default=ROOT / "figures.ipynb")
    ap.add_argument("--runs", default="runs", help="runs directory (relative: to the repository root)")
    ap.add_argument("--out", default="docs", help="where the PNGs go (relative: to the repository root)")
    ap.add_argument("--timeout", type=int, default=600, help="seconds per cell")
    args = ap.parse_args()
    execute_notebook(args.notebook, args.runs, args.out, timeout=args.timeout)
    print(f"executed {args.notebook} with runs {args.runs}; figures under {args.out}")


if __name__ == "__main__":
    main()
