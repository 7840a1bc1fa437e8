"""Metrics records: read what `python -m metrics` wrote, check that one table holds one model (one sample count,
one judge), and keep them as results.json (runs/) or as the committed record behind a page (docs/records/)."""
from __future__ import annotations

import json
from pathlib import Path

from common.io import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "docs" / "records"  # committed: <experiment>.json, what the pages are generated from


class ResultsError(ValueError):
    """Records that cannot make one honest table; the message says what to rerun."""


def read_metrics(runs: str | Path, experiment: str, model: str) -> list[dict]:
    """Every record under runs/<experiment>/<model>/metrics/, each with `metrics_file` (its name there)."""
    folder = Path(runs) / experiment / model / "metrics"
    return [json.loads(p.read_text()) | {"metrics_file": p.name} for p in sorted(folder.glob("*.json"))]


def field(record: dict, name: str):
    """A record's value of an identity field: a top-level key, or a metric's (the judge)."""
    return record["metrics"].get(name) if name == "judge" else record.get(name)


def check_one(records: list[dict], fields: tuple[str, ...], where: str, remedy: str) -> None:
    """Refuse records that mix values of any identity field (model weights or chain, sample count, judge), or that
    predate model identities: a table of them would compare cells made by different things."""
    for name in fields:
        values = {json.dumps(field(r, name), sort_keys=True) for r in records}
        if len(values) > 1 or (name == "model_identity" and "null" in values):
            raise ResultsError(f"metrics records under {where} come from {len(values)} values of {name} "
                               f"({', '.join(sorted(v[:60] for v in values))}): one table holds one of each; "
                               f"{remedy}, or move the stale files away")


def read_floor(runs: str | Path, experiment: str) -> dict | None:
    path = Path(runs) / experiment / "floor.json"
    return json.loads(path.read_text()) if path.is_file() else None


def results_path(runs: str | Path, experiment: str) -> Path:
    return Path(runs) / experiment / "results.json"


def write_results(runs: str | Path, experiment: str, records: list[dict]) -> Path:
    return atomic_write_json(results_path(runs, experiment), records)


def load_results(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"no records at {path}")
    records = json.loads(path.read_text())
    if not isinstance(records, list):
        raise ResultsError(f"{path} holds a {type(records).__name__}, expected a list of records")
    return records


def committed(experiment: str, records_dir: str | Path = RECORDS) -> Path:
    return Path(records_dir) / f"{experiment}.json"


def row_of(r: dict) -> tuple[str, str, str]:
    """(model, sampler, schedule); a sampler run with another multi-jump or confidence rule or order of positions
    than its default is its own row (its files carry it in their names)."""
    sampler = r["sampler"]
    if r.get("multi_jump") not in (None, "reject"):
        sampler += f" ({r['multi_jump']} jump)"
    if r.get("confidence") not in (None, "max"):
        sampler += f" ({r['confidence']})"
    if r.get("order_sha256"):  # DUS in a user's order (unmask.order)
        sampler += f" (order {r['order_sha256'][:8]})"
    return r["model"], sampler, r["schedule"]


def cell_key(r: dict) -> tuple:
    """What tells two records of one table apart: the row (row_of), the column (the budget a record was made for,
    else its model calls), the sampling seed and the role; the experiment, and an ablation's KLUB samples and search
    seed, where a record carries them (tables of one experiment share the first; ablation_klub's rows differ by the
    others)."""
    row = row_of(r) if {"model", "sampler", "schedule"} <= set(r) else None  # a floor record has no row
    return (r.get("experiment"), row, r.get("budget", r.get("nfe_calls")), r.get("seed"), r.get("role"),
            r.get("klub_samples"), r.get("search_seed"))


def dropped_cells(old: list[dict], new: list[dict]) -> list[str]:
    """The cells (and seeds) of `old` that `new` lacks, each as 'model sampler schedule, N calls, seed S'."""
    def name(r):
        row = " ".join(row_of(r)) if {"model", "sampler", "schedule"} <= set(r) else r.get("role")
        return f"{row}, {r.get('budget', r.get('nfe_calls'))} calls, seed {r.get('seed')}"
    kept = {cell_key(r) for r in new}
    return [name(r) for r in old if cell_key(r) not in kept]


def commit_records(runs: str | Path, experiment: str, records_dir: str | Path = RECORDS, tag: str | None = None,
                   replace: bool = False) -> Path:
    """Copy runs/<experiment>/results.json to docs/records/<experiment>.json, the record a page is made from;
    samples files under another runs directory are named as under runs/, so no machine's path is committed. A tag
    commits another table of the experiment beside its main one (docs/records/<experiment>+<tag>.json). A committed
    record is not overwritten by one that lacks some of its cells or seeds (e.g. a table made without the --add that
    joined them) unless `replace`."""
    runs = Path(runs).resolve()
    records = load_results(results_path(runs, experiment))
    target = committed(f"{experiment}+{tag}" if tag else experiment, records_dir)
    lost = dropped_cells(load_results(target), records) if target.is_file() and not replace else []
    if lost:
        raise ResultsError(f"{results_path(runs, experiment)} lacks {len(lost)} cell(s) of {target}: "
                           + "; ".join(lost[:4]) + (f"; ... and {len(lost) - 4} more" if len(lost) > 4 else "")
                           + f". Remake the table with --add {target} to keep them, or record with --replace to "
                           "drop them")
    for r in records:
        path = Path(r.get("samples_file", ""))
        if path.is_absolute() and path.is_relative_to(runs):
            r["samples_file"] = str(Path("runs") / path.relative_to(runs))
    return atomic_write_json(target, records)
