"""The tables of scripts/jys_grid_table.py as one Markdown page, from the committed records.

    python -m results grids [--collect runs]   (records: docs/records/grids, page: docs/jys_objective.md,
                                                figure: docs/oracle_schedules.png)

--collect copies every runs/<experiment>/oracle/grids-*.json (a run of scripts/jys_grid_table.py) into the records
(docs/records/grids/<experiment>/oracle/, small JSON committed beside the page), so that any machine regenerates
the page without rerunning; the page is then written from the records.

Per experiment, sampler and tag (J's objective and weight): per budget of model calls, each grid's J ± s.e. and
its samples' metrics, the best fixed grid marked, and Spearman's ρ between J and each metric over the grids.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from matplotlib.figure import Figure

from common.io import atomic_write_bytes, save_figure
from results.records import ResultsError

ROOT = Path(__file__).resolve().parents[1]

NAMES = {"dp": "**JYS: J optimum (lattice DP)**", "jys": "JYS hierarchy (published search)"}
REFINED = "**JYS: J optimum, refined on the sampler's states**"


def placed(data: dict) -> bool:
    """Whether a table's J optimum has the noise-removal call as its last step (jys.end=denoise; tables before it
    have no 'end' and ended at ε)."""
    return data.get("settings", {}).get("end") == "denoise"


def refined(data: dict) -> bool:
    """Whether a table was made with jys.refine=onpolicy: its 'dp' grid is the refined one, not J's optimum."""
    return "jys.refine=onpolicy" in data.get("settings", {}).get("overrides", [])
# One table per oracle, made with the defaults of python -m jys (the folk twin's with the earlier lattice of 2 points
# per grid step): the schedules' figure draws them, docs/results/jys.md shows their summaries.
DEFAULTS = (("count", "grids-euler-end"), ("count_uniform", "grids-euler-end-wmarginal"),
            ("count_uniform_const", "grids-euler-end-wmarginal"), ("chain_gauss", "grids-euler-end-wmarginal"),
            ("folk_twin", "grids-tau_leaping-wnone"))  # the default's tables (jys.end, and jys.weight=auto: marginal for
# Euler on the uniform and ordinal oracles; the folk twin's argmax keeps ε, its τ-leaping the plain term)


def kept_cells(prior: dict, settings: dict, calls: list[int]) -> dict:
    """The cells of an earlier grid table that a run of `calls` keeps: those of the other budgets, and only when the
    earlier run had the same settings (a run of some budgets extends a table, never mixes two settings)."""
    if prior.get("settings") != settings:
        return {}
    return {k: v for k, v in prior.get("cells", {}).items() if int(k.split("@")[1]) not in calls}


def seed_summary(per_seed: list[dict]) -> dict:
    """One grid's metrics over its sampling seeds: each metric's mean, and from two seeds on `<metric>_se`, the
    standard error of that mean over the seeds (sample standard deviation / √n)."""
    if not per_seed:
        raise ValueError("a grid's cell needs the metrics of at least one sampling seed")
    out = {}
    n = len(per_seed)
    for m in per_seed[0]:
        values = [float(v[m]) for v in per_seed]
        mean = sum(values) / n
        out[m] = mean
        if n > 1:
            out[f"{m}_se"] = (sum((v - mean) ** 2 for v in values) / (n - 1) / n) ** 0.5
    return out


def value(cell: dict, metric: str) -> str:
    """A metric of a grid's samples, with its standard error over sampling seeds where the run had several."""
    se = cell.get(f"{metric}_se")
    return f"{cell[metric]:.4f}" + (f" ± {se:.4f}" if se is not None else "")


def table(path: Path) -> str:
    data = json.loads(path.read_text())
    st, cells = data["settings"], data["cells"]
    budgets = sorted(int(k.split("@")[1]) for k in cells if k.startswith("spearman"))  # complete budgets only
    out = [f"### {path.parent.parent.name}, {path.stem.removeprefix('grids-')}",
           "", f"`python scripts/jys_grid_table.py {path.parent.parent.name} "
           f"{' '.join(o for o in st['overrides'] if not o.startswith(('experiment=', 'model=', 'progress=')))}"
           f"{' --no-hierarchy' if st.get('hierarchy') is False else ''} --weight {st['weight']}` "
           f"(objective {st.get('objective') or 'auto'}, {st['klub_samples']} lattice "
           f"sequences, {st['num']} samples per cell; where a metric shows ± s.e., the mean over sampling seeds "
           f"0 .. N-1, N as the grid's row says)", ""]
    for b in budgets:
        rows = {k.split("@")[0]: v for k, v in cells.items() if k.endswith(f"@{b}") and not k.startswith("spearman")}
        metrics = [m for m in ("countdown_error", "chain_nll", "hellinger_ref", "bigram_tv", "entropy_gap")
                   if m in next(iter(rows.values()))]
        first = metrics[0]
        fixed = {n: r[first] for n, r in rows.items() if n not in ("dp", "jys")}
        best_fixed = min(fixed, key=fixed.get)
        out += [f"{b} model calls:", "", "| grid | J ± s.e. | " + " | ".join(metrics) + " |",
                "|---|---|" + "---|" * len(metrics)]
        names = {**NAMES, "dp": REFINED} if refined(data) else \
            {**NAMES, "dp": "**JYS: J optimum (lattice DP), the noise removal its last step**"} if placed(data) else NAMES
        for n, r in sorted(rows.items(), key=lambda kv: kv[1]["J"]):
            name = names.get(n, n) + (" (best fixed grid)" if n == best_fixed else "") + (
                f" [{r['seeds']} seeds]" if r.get("seeds", 1) > 1 else "")
            out.append(f"| {name} | {r['J']:.4g} ± {r['J_se']:.2g} | " +
                       " | ".join(value(r, m) for m in metrics) + " |")
        sp = cells.get(f"spearman@{b}", {})
        reach = sp.get("hierarchy_reach")
        out += ["", "Spearman ρ(J, metric): " + ", ".join(f"{m} {v:.2f}" for m, v in sp.items() if m != "hierarchy_reach")
                + (f"; the hierarchy reaches {reach:.0%} of the reduction of J from uniform to the optimum" if reach
                   is not None else ""), ""]
    return "\n".join(out)


def primary(cell: dict) -> str:
    """The metric a table's cells are ranked by (the first of CountDown error, music Hellinger, chain NLL)."""
    return next(m for m in ("countdown_error", "hellinger_ref", "chain_nll") if m in cell)


def summary(path: Path) -> str:
    """One row per grid family and a column per budget: uniform, cosine, the best power grid (chosen on the metric:
    an oracle-only ceiling), today's hierarchy and J's optimum; the metric, and J's rank correlation with it."""
    data = json.loads(path.read_text())
    cells = data["cells"]
    jys_row = REFINED if refined(data) else "**JYS: J optimum (DP), noise removal as last step**" if placed(data) \
        else "**JYS: J optimum (DP)**"
    budgets = sorted(int(k.split("@")[1]) for k in cells if k.startswith("spearman"))  # complete budgets only
    some = next(iter(cells.values()))
    first = primary(some)
    second = "bigram_tv" if "bigram_tv" in some and first != "countdown_error" else None  # a divergence beside NLL
    rows = {"uniform": [], "cosine": [], "best power grid (q)": [], "JYS hierarchy": [], jys_row: [],
            f"ρ(J, {first})": []}
    for b in budgets:
        at = {k.split("@")[0]: v for k, v in cells.items() if k.endswith(f"@{b}") and not k.startswith("spearman")}
        powers = {k: v[first] for k, v in at.items() if k.startswith("power")}
        q = min(powers, key=powers.get) if powers else None

        def get(n: str) -> str:
            if n not in at:
                return "–"
            return value(at[n], first) + (f" / {value(at[n], second)}" if second else "")

        rows["uniform"].append(get("uniform"))
        rows["cosine"].append(get("cosine"))
        rows["best power grid (q)"].append(f"{get(q)} ({q.removeprefix('power')})" if q else "–")
        rows["JYS hierarchy"].append(get("jys"))
        rows[jys_row].append(get("dp"))
        sp = cells.get(f"spearman@{b}", {}).get(first)
        rows[f"ρ(J, {first})"].append(f"{sp:.2f}" if sp is not None else "–")
    head = f"| {path.parent.parent.name}, {path.stem.removeprefix('grids-')} ({first}{' / ' + second if second else ''}) | " + \
        " | ".join(f"{b} calls" for b in budgets) + " |"
    lines = [head, "|---|" + "---|" * len(budgets)] + [f"| {n} | " + " | ".join(v) + " |" for n, v in rows.items()]
    return "\n".join(lines)


def schedules_figure(records: Path, calls: int = 16) -> Figure | None:
    """The grids of DEFAULTS' tables at one budget, t_i against i/N: uniform, cosine, the best power grid (on the
    metric), the published hierarchy and J's optimum, each labelled with its metric. None when no table has it."""
    found = []
    for experiment, name in DEFAULTS:
        path = records / experiment / "oracle" / f"{name}.json"
        cells = json.loads(path.read_text())["cells"] if path.is_file() else {}
        at = {k.split("@")[0]: v for k, v in cells.items() if k.endswith(f"@{calls}") and not k.startswith("spearman")}
        if "dp" in at:
            found.append((experiment, name, at))
    if not found:
        return None
    fig = Figure(figsize=(3.9 * len(found), 3.7))
    for ax, (experiment, name, at) in zip(fig.subplots(1, len(found), squeeze=False)[0], found):
        metric = primary(at["dp"])
        powers = {k: v[metric] for k, v in at.items() if k.startswith("power")}
        lines = [("uniform", ".-", "tab:green"), ("cosine", ".-", "tab:blue"), ("jys", ".-.", "tab:brown"),
                 ("dp", "o-", "tab:orange")]
        if powers:
            lines.insert(2, (min(powers, key=powers.get), ".--", "black"))
        for key, style, color in lines:
            if key not in at:
                continue
            times = at[key]["times"]
            n = len(times) - 1
            label = {"dp": "JYS (J optimum)", "jys": "hierarchy"}.get(key, key)
            ax.plot([i / n for i in range(n + 1)], times, style, color=color, markersize=3,
                    label=f"{label} ({at[key][metric]:.4g})")
        ax.set_title(f"{experiment}, {name.removeprefix('grids-')}, {calls} calls", fontsize=8)
        ax.set_xlabel("step i / N")
        ax.set_ylabel("t_i")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6.5, title=metric, title_fontsize=7)
    return fig


def report(records: Path, out: Path, collect: Path | None = None, figure: Path | None = None) -> None:
    """Copy collect/*/oracle/grids-*.json into the records (when given), then write the page from the records."""
    if collect:
        for f in sorted(Path(collect).glob("*/oracle/grids-*.json")):
            if not re.search(r"-smoke$", f.stem):
                atomic_write_bytes(records / f.relative_to(collect), f.read_bytes())
    files = sorted(records.glob("*/oracle/grids-*.json"))
    if not files:
        raise ResultsError(f"no grids-*.json under {records}/*/oracle: run scripts/jys_grid_table.py, then "
                           "python -m results grids --collect runs")
    page = ["# The grid objective J against the samples, on the exact oracles",
            "", "Generated by `python -m results grids` from the records of `scripts/jys_grid_table.py` "
            "(`docs/records/grids/`). "
            "Rows sorted by J; the metric columns are of the same grid's samples (sampling seed 0, or the mean ± s.e. over "
            "the seeds a row names).", ""]
    page += ["## Summary", ""] + [summary(f) + "\n" for f in files] + ["## Every grid", ""]
    page += [table(f) for f in files]
    atomic_write_bytes(out, ("\n".join(page) + "\n").encode())
    print(f"{len(files)} tables -> {out}")
    if figure is not None:
        fig = schedules_figure(records)
        if fig is not None:
            print(f"the default tables' grids -> {save_figure(fig, figure, dpi=110)}")
