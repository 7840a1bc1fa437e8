"""scripts/jys_grid_table.py --from: a grids record's grids sampled at more seeds, with no search and no J read."""
import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("jys_grid_table", ROOT / "scripts" / "jys_grid_table.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def _run(script, monkeypatch, args):
    monkeypatch.setattr(sys, "argv", ["jys_grid_table.py", *args])
    script.main()


def test_from_record_keeps_grids_and_j_and_adds_seeds(tmp_path, monkeypatch):
    """A tiny table (count_uniform_const cut to 8 tokens, 4 and 5 calls), then --from it at 2 seeds for 4 calls: the
    same grids and the record's J (not recomputed) with 2 seeds' means, the 5-call cells kept; --from at seed 0 alone
    gives the first run's metrics, and a record it does not reproduce is refused."""
    script = _script()
    common = ["count_uniform_const", "--num", "16", "--klub-samples", "8", "--lattice", "8", "--powers", "1",
              "--no-hierarchy"]
    over = ["--", "experiment.length=8", f"runs_dir={tmp_path}", f"experiment.data.dir={tmp_path}/data"]
    _run(script, monkeypatch, [*common, "--calls", "4", "5", "--tag", "a", *over])
    first = json.loads((tmp_path / "count_uniform_const" / "oracle" / "grids-euler-a.json").read_text())
    record = tmp_path / "record.json"
    first["cells"]["dp@4"]["J"] += 1.0  # read from the record, never recomputed
    record.write_text(json.dumps(first))
    _run(script, monkeypatch, [*common, "--calls", "4", "--seeds", "2", "--from", str(record), "--tag", "b", *over])
    second = json.loads((tmp_path / "count_uniform_const" / "oracle" / "grids-euler-b.json").read_text())
    assert second["settings"] == first["settings"]
    for name in ("uniform", "cosine", "power1", "dp"):
        a, b = first["cells"][f"{name}@4"], second["cells"][f"{name}@4"]
        assert b["times"] == a["times"] and b["J"] == a["J"] and b["J_terms"] == a["J_terms"]
        assert b["seeds"] == 2 and "chain_nll_se" in b
        assert second["cells"][f"{name}@5"] == first["cells"][f"{name}@5"]
    # seed 0 alone again: the first table's metrics, from the shared samples cache
    _run(script, monkeypatch, [*common, "--calls", "4", "--from", str(record), "--tag", "c", *over])
    third = json.loads((tmp_path / "count_uniform_const" / "oracle" / "grids-euler-c.json").read_text())
    assert third["cells"]["dp@4"]["chain_nll"] == first["cells"]["dp@4"]["chain_nll"]
    # a record whose seed 0 this code does not reproduce (other code or defaults) is refused
    first["cells"]["uniform@4"]["chain_nll"] += 1e-3
    record.write_text(json.dumps(first))
    with pytest.raises(SystemExit, match="uniform at 4 calls gives chain_nll .* at seed 0 here and .* in the record"):
        _run(script, monkeypatch, [*common, "--calls", "4", "--from", str(record), "--tag", "d", *over])


def test_from_record_refuses_other_settings_and_missing_budgets(tmp_path):
    script = _script()
    settings = {"num": 16, "weight": "none"}
    record = tmp_path / "record.json"
    record.write_text(json.dumps({"settings": {"num": 32, "weight": "none"},
                                  "cells": {"uniform@4": {"times": [1.0, 0.5, 1e-5]}}}))
    with pytest.raises(SystemExit, match="num: stored 32, now 16"):
        script.from_record(record, settings, [4])
    record.write_text(json.dumps({"settings": settings, "cells": {"uniform@4": {"times": [1.0, 0.5, 1e-5]},
                                                                  "spearman@4": {"chain_nll": 1.0}}}))
    assert script.from_record(record, settings, [4]) == {4: {"uniform": {"times": [1.0, 0.5, 1e-5]}}}
    with pytest.raises(SystemExit, match=r"no grids for \[8\] model calls \(it has \[4\]\)"):
        script.from_record(record, settings, [8])
    with pytest.raises(SystemExit, match="no such file"):
        script.from_record(tmp_path / "absent.json", settings, [4])
    record.write_text(json.dumps([{"schedule": "uniform"}]))
    with pytest.raises(SystemExit, match="not a grids record"):
        script.from_record(record, settings, [4])
