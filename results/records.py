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


CELL_FIELDS = ("model", "sampler", "multi_jump", "confidence", "order_sha256", "schedule", "nfe_calls", "budget", "seed",
               "role")  # what tells two records of a table apart (results.tables.row_of and the column, seed, role)


def dropped_cells(old: list[dict], new: list[dict]) -> list[str]:
    """The cells (and seeds) of `old` that `new` lacks, each as 'model sampler schedule, N calls, seed S'."""
    def key(r):
        return tuple(str(r.get(k)) for k in CELL_FIELDS)
    kept = {key(r) for r in new}
    return [f"{r.get('model')} {r.get('sampler')} {r.get('schedule')}, {r.get('budget', r.get('nfe_calls'))} calls, "
            f"seed {r.get('seed')}" for r in old if key(r) not in kept]


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
