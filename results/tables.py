"""An experiment's records as tables: rows (model, sampler, schedule), a column per NFE (model calls per sequence),
each cell the mean over sampling seeds with its standard error where the record has one. Markdown, so that the
console and the pages print the same text."""
from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path

import numpy as np

from results.records import ResultsError, cell_key, check_one, read_floor, read_metrics, row_of
from results.specs import SCHEDULES, Metric, Spec
from samplers.registry import steps_for_calls

Rows = dict[tuple[str, str, str], dict[int, list[dict]]]  # (model, sampler, schedule) -> NFE -> records (seeds)


def collect(runs: str | Path, spec: Spec, samplers=None, nfes=None, schedules=SCHEDULES, added=()) -> list[dict]:
    """The records of one experiment's table: its grid cells, each model's quality cell and the reference cell;
    each record gets a `role` (cell, quality, reference) and a `budget`: the model calls per sequence of its column
    (its nfe_calls, or the budget in `nfes` whose grid steps it took: a two-call step under an even budget spends
    one call less). `added`: the records of an earlier run (a committed record; its floor is with_floor's), taken
    beside runs' own, e.g. the other sampling seeds of the same cells. Refuses records of two identities per model,
    two records of one cell and seed, and a cell whose seeds were sampled on two grids."""
    out = []
    for model in spec.models:
        mine = []
        earlier = [{k: v for k, v in r.items() if k not in ("role", "budget")}
                   for r in added if r.get("role") != "floor" and r.get("model") == model]
        for r in read_metrics(runs, spec.experiment, model) + earlier:
            if r.get("schedule") not in schedules or "nfe_calls" not in r:
                continue
            uniform = r["schedule"] == "uniform"
            if spec.reference and uniform and (r["nfe_calls"], r["seed"]) == spec.reference:
                role = "reference"
            elif spec.reference and r["seed"] == spec.reference[1]:
                continue  # the reference's seed is for the reference only
            elif (spec.quality_nfe and uniform and r["nfe_calls"] == spec.quality_nfe and r["seed"] == 0
                  and r["sampler"] == (samplers[0] if samplers else r["sampler"])):
                role = "quality"
            elif (samplers is None or r["sampler"] in samplers) and budget_of(r, nfes) is not None:
                role = "cell"
            else:
                continue
            if spec.metrics[0].key not in r["metrics"]:
                raise ResultsError(f"{source(r, runs, spec.experiment, model)} has no {spec.metrics[0].key}: rerun "
                                   f"the metrics stage ({spec.script})")
            mine.append(r | {"role": role, "budget": budget_of(r, nfes) or r["nfe_calls"]})
        if mine:
            where = f"{Path(runs) / spec.experiment / model}" + (" and the records added" if earlier else "")
            check_one(mine, spec.identity, where, f"rerun {spec.script}")
            check_distinct(mine, where)
            check_grids(mine, where)
        out += mine
    if not out:
        raise ResultsError(f"no metrics records of {spec.experiment} under {Path(runs) / spec.experiment}/"
                           f"{{{','.join(spec.models)}}}/metrics: run the stages first ({spec.script})")
    return out


def budget_of(r: dict, nfes) -> int | None:
    """The column of a record: its model calls per sequence when they are among `nfes` (or no list is given), else
    the budget in `nfes` whose grid steps it took (steps_for_calls), else None."""
    if nfes is None or r["nfe_calls"] in nfes:
        return r["nfe_calls"]
    return next((n for n in nfes if steps_for_calls(r["sampler"], n) == r["nfe"]), None)


def check_distinct(records: list[dict], where: str) -> None:
    """One record per (row, column, seed): two would be averaged as if they were seeds."""
    seen: dict[tuple, str] = {}
    for r in records:
        key = cell_key(r)
        if key in seen:
            both = "added" in seen[key] + source(r)
            raise ResultsError(f"{where}: {seen[key]} and {source(r)} are the same cell {row_of(r)} at "
                               f"{r.get('budget', r['nfe_calls'])} calls, seed {r['seed']}, made with settings the "
                               "table does not tell apart; "
                               + ("leave out the --add record that holds it, or move the runs copy away" if both
                                  else "move one away"))
        seen[key] = source(r)


def check_grids(records: list[dict], where: str) -> None:
    """The seeds of one cell were sampled on one grid (records since `grid_sha256`; older ones are not checked): a
    schedule label searched again under other defaults is another grid, not another seed."""
    grids: dict[tuple, dict] = {}
    for r in records:
        if "grid_sha256" in r:
            first = grids.setdefault((row_of(r), r.get("budget", r["nfe_calls"]), r.get("role")), r)
            if first["grid_sha256"] != r["grid_sha256"]:
                raise ResultsError(f"{where}: {source(first)} and {source(r)} are seeds of the cell {row_of(r)} at "
                                   f"{r.get('budget', r['nfe_calls'])} calls sampled on two grids; remake one of them "
                                   "on the other's grid, or leave it out")


def source(r: dict, runs=None, experiment: str = "", model: str = "") -> str:
    """Where a record was read: its metrics file (under runs/, when given), or the record it was added from."""
    if "added_from" in r:
        return f"{r.get('metrics_file', '?')} (added from {r['added_from']})"
    name = r.get("metrics_file", "?")
    return str(Path(runs) / experiment / model / "metrics" / name) if runs is not None else name


def with_floor(records: list[dict], runs: str | Path, spec: Spec, added=()) -> list[dict]:
    """The records and the experiment's floor record (held-out data: runs', else that of the `added` records),
    refused if made from other data."""
    floor = None
    if spec.floor:
        floor = read_floor(runs, spec.experiment) or next((r for r in added if r.get("role") == "floor"), None)
    if floor is None:
        return records
    data = {json.dumps(r.get("data_identity"), sort_keys=True) for r in records}
    if json.dumps(floor.get("data_identity"), sort_keys=True) not in data:
        raise ResultsError(f"{Path(runs) / spec.experiment / 'floor.json'} was made from other data than the "
                           f"samples' records: rerun {spec.script}")
    return records + [floor | {"role": "floor"}]


def rows_of(records: list[dict], metric: Metric, roles=("cell", "quality")) -> Rows:
    rows: Rows = defaultdict(lambda: defaultdict(list))
    for r in records:
        if r.get("role", "cell") in roles and metric.key in r.get("metrics", {}):
            rows[row_of(r)][r.get("budget", r["nfe_calls"])].append(r)
    return rows


def mean(records: list[dict], key: str) -> float:
    return float(np.mean([r["metrics"][key] for r in records]))


def cell_text(records: list[dict], metric: Metric) -> str:
    """Mean over seeds; ± its standard error where every seed recorded one (one seed: its own; several: that of the
    mean of independent seeds, √(Σ se²)/n, for metrics whose seeds are independent); the extra metric in brackets."""
    d = metric.digits
    text = f"{mean(records, metric.key):.{d}f}"
    ses = [r["metrics"].get(f"{metric.key}_se") for r in records]
    if all(se is not None for se in ses) and (len(ses) == 1 or metric.independent_seeds):
        text += f" ± {math.sqrt(sum(se * se for se in ses)) / len(ses):.{max(d, 2)}f}"
    if metric.extra and all(metric.extra in r["metrics"] for r in records):
        text += f" ({mean(records, metric.extra):.2f})"
    if len(records) > 1:
        text += f" [{len(records)} seeds]"
    if any("budget" in r and r["budget"] != r.get("nfe_calls") for r in records):
        text += f" ({records[0]['nfe_calls']} calls)"
    return text


def best_schedules(rows: Rows, metric: Metric) -> dict[tuple[str, str, int], str]:
    """(model, sampler, NFE) -> the schedule with the lowest mean there (of those with a cell at that NFE; none
    where several share it, as every grid of one step does)."""
    values: dict[tuple[str, str, int], dict[str, float]] = defaultdict(dict)
    for (model, sampler, schedule), row in rows.items():
        for n, records in row.items():
            values[(model, sampler, n)][schedule] = mean(records, metric.key)
    return {key: min(v, key=v.get) for key, v in values.items()
            if len(v) > 1 and list(v.values()).count(min(v.values())) == 1}  # a tie has no best


def markdown(records: list[dict], metric: Metric, unit: str = "sequence") -> str:
    """One Markdown table of a metric: a row per (model, sampler, schedule), a column per NFE; the best schedule
    of each (model, sampler, NFE) in bold; below it, uniform / JYS per sampler and the reference and floor cells."""
    rows = rows_of(records, metric)
    nfes = sorted({n for row in rows.values() for n in row})
    best = best_schedules(rows, metric)
    lines = ["| model | sampler | schedule | " + " | ".join(f"NFE {n}" for n in nfes) + " |",
             "|---|---|---|" + "---|" * len(nfes)]
    rank = {name: i for i, name in enumerate(SCHEDULES)}  # the standard labels first, an ablation's after them
    order = sorted(rows, key=lambda k: (k[0] == "oracle", k[0], k[1], rank.get(k[2], len(rank)), k[2]))
    for model, sampler, schedule in order:
        row = rows[(model, sampler, schedule)]
        cells = []
        for n in nfes:
            text = cell_text(row[n], metric) if n in row else "-"
            cells.append(f"**{text}**" if best.get((model, sampler, n)) == schedule else text)
        lines.append(f"| {model} | {sampler} | {schedule} | " + " | ".join(cells) + " |")
    notes = []
    for model, sampler in sorted({k[:2] for k in rows}):
        u, j = rows.get((model, sampler, "uniform"), {}), rows.get((model, sampler, "jys"), {})
        ratios = [f"{n}: {mean(u[n], metric.key) / mean(j[n], metric.key):.2f}" for n in nfes if n in u and n in j
                  and mean(j[n], metric.key) > 0]
        if ratios:
            notes.append(f"uniform / JYS ({model}, {sampler}), by NFE: " + ", ".join(ratios))
    for r in records:
        if r.get("role") == "reference" and metric.key in r["metrics"]:
            notes.append(f"reference ({r['model']}, {r['sampler']}, uniform, NFE {r['nfe_calls']}, seed {r['seed']}): "
                         f"{cell_text([r], metric)}")
        if r.get("role") == "floor" and metric.key in r["metrics"]:
            notes.append(f"held-out data (the floor), {r['num_samples']} {unit}s: {cell_text([r], metric)}")
    if any(len(cell) > 1 and "±" in cell_text(cell, metric) for row in rows.values() for cell in row.values()):
        notes.append("± of a cell of several seeds: the standard error of their mean, √(Σ se²)/n (independent seeds)")
    return "\n".join(lines + ([""] + [f"- {n}" for n in notes] if notes else []))


def tables(records: list[dict], spec: Spec) -> str:
    """Every metric's table of an experiment, each under a line naming it."""
    head = (f"{spec.experiment}: {len([r for r in records if r.get('role') != 'floor'])} records; NFE = model calls "
            f"per {spec.unit}; mean ± standard error where recorded, [n seeds] where averaged over sampling seeds")
    parts = [head]
    for metric in spec.metrics:
        parts += ["", f"{metric.label} (`{metric.key}`" + (f", `{metric.extra}` in brackets" if metric.extra else "")
                  + "):", "", markdown(records, metric, spec.unit)]
    return "\n".join(parts)
