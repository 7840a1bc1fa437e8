"""The results layer on hand-made records: the table's cells (mean over seeds, standard error, the best schedule in
bold, uniform / JYS), the identity checks, the spec lookup, and the pages' generated blocks."""
import json
from dataclasses import replace

import pytest
import torch

from results import pages
from results.grids import kept_cells, seed_summary
from results.records import ROOT, ResultsError, commit_records, write_results
from results.specs import spec_for
from results.tables import collect, markdown, with_floor


def record(schedule, calls, value, seed=0, se=None, model="m", sampler="euler", identity="w1", num=64):
    metrics = {"hellinger_ref": value, "hellinger_true": value + 1}
    if se is not None:
        metrics["hellinger_ref_se"] = se
    return {"experiment": "folk", "model": model, "sampler": sampler, "schedule": schedule, "nfe": calls - 1,
            "nfe_calls": calls, "num_samples": num, "seed": seed, "metrics": metrics,
            "model_identity": {"weights_sha256": identity}}


def write_runs(tmp_path, records, experiment="folk", model="m"):
    folder = tmp_path / experiment / model / "metrics"
    folder.mkdir(parents=True)
    for i, r in enumerate(records):
        (folder / f"{i}.json").write_text(json.dumps(r))


def test_table_cells_by_hand():
    metric = spec_for("folk").metrics[0]
    records = [record("uniform", 8, 0.5, se=0.01), record("jys", 8, 0.35, se=0.02),
               record("cosine", 8, 0.30, seed=0), record("cosine", 8, 0.50, seed=1),  # two seeds: mean 0.40
               record("uniform", 16, 0.2, se=0.01), record("jys", 16, 0.25, se=0.01)]
    text = markdown(records, metric)
    lines = text.splitlines()
    assert lines[0] == "| model | sampler | schedule | NFE 8 | NFE 16 |"
    assert lines[2] == "| m | euler | uniform | 0.5000 ± 0.0100 | **0.2000 ± 0.0100** |"
    assert lines[3] == "| m | euler | cosine | 0.4000 [2 seeds] | - |"
    assert lines[4] == "| m | euler | jys | **0.3500 ± 0.0200** | 0.2500 ± 0.0100 |"
    assert "uniform / JYS (m, euler), by NFE: 8: 1.43, 16: 0.80" in text


def test_collect_refuses_two_model_identities_and_names_the_script(tmp_path):
    write_runs(tmp_path, [record("uniform", 8, 0.5), record("jys", 8, 0.4, identity="w2")], model="folk-tauldr")
    with pytest.raises(ResultsError, match=r"2 values of model_identity.*bash scripts/piano\.sh"):
        collect(tmp_path, spec_for("folk"))


def test_collect_refuses_two_sample_counts(tmp_path):
    write_runs(tmp_path, [record("uniform", 8, 0.5), record("jys", 8, 0.4, num=128)], model="folk-tauldr")
    with pytest.raises(ResultsError, match="num_samples"):
        collect(tmp_path, spec_for("folk"))


def test_collect_adds_an_earlier_records_seeds_and_refuses_a_seed_twice(tmp_path):
    """table --add: a committed record's cells (seed 0) beside runs' seed 1 make two-seed cells, its reference and
    floor kept where runs/ has none; the same cell and seed in both, two grids in one cell, or another model identity
    is refused, naming the record it came from."""
    model = "folk-tauldr"
    write_runs(tmp_path, [record("uniform", 8, 0.5, seed=1, model=model) | {"grid_sha256": "g1"},
                          record("jys", 8, 0.3, seed=1, model=model)], model=model)
    earlier = [r | {"role": "cell", "budget": 8, "added_from": "old.json", "metrics_file": f"{r['schedule']}.json"}
               for r in (record("uniform", 8, 0.7, model=model), record("jys", 8, 0.4, model=model))]
    reference = record("uniform", 512, 0.1, seed=100, model=model) | {"role": "reference", "added_from": "old.json"}
    floor = {"role": "floor", "metrics": {"hellinger_ref": 0.6}, "num_samples": 64, "added_from": "old.json"}
    spec = spec_for("folk")
    cells = with_floor(collect(tmp_path, spec, added=earlier + [reference, floor]), tmp_path, spec, [floor])
    assert sorted((r["role"], r["schedule"], r["seed"]) for r in cells if r["role"] != "floor") == [
        ("cell", "jys", 0), ("cell", "jys", 1), ("cell", "uniform", 0), ("cell", "uniform", 1),
        ("reference", "uniform", 100)]
    assert [r["metrics"] for r in cells if r["role"] == "floor"] == [{"hellinger_ref": 0.6}]
    text = markdown(cells, spec.metrics[0])
    assert "| folk-tauldr | euler | uniform | 0.6000 [2 seeds] |" in text and "| **0.3500 [2 seeds]** |" in text
    # every seed's standard error: the music protocol's seeds judge the same tunes (no ±), independent seeds
    # combine to that of their mean, √(0.03² + 0.04²) / 2 = 0.025, and a note says which ± it is
    for r in cells:
        if r["role"] == "cell":
            r["metrics"]["hellinger_ref_se"] = 0.03 if r["seed"] == 0 else 0.04
    assert "0.6000 [2 seeds]" in markdown(cells, spec.metrics[0])
    independent = markdown(cells, replace(spec.metrics[0], independent_seeds=True))
    assert "| folk-tauldr | euler | uniform | 0.6000 ± 0.0250 [2 seeds] |" in independent
    assert "± of a cell of several seeds: the standard error of their mean" in independent
    twice = earlier + [earlier[0] | {"added_from": "other.json"}]
    with pytest.raises(ResultsError, match=r"uniform\.json \(added from old\.json\) and uniform\.json \(added from "
                                           r"other\.json\).*leave out the --add record"):
        collect(tmp_path, spec, added=twice)
    with pytest.raises(ResultsError, match=r"seeds of the cell .*uniform.* sampled on two grids"):
        collect(tmp_path, spec, added=[earlier[0] | {"grid_sha256": "g0"}])
    with pytest.raises(ResultsError, match="model_identity"):
        collect(tmp_path, spec, added=[earlier[0] | {"model_identity": {"weights_sha256": "w2"}}])


def test_collect_sorts_cells_reference_and_floor(tmp_path):
    write_runs(tmp_path, [record("uniform", 8, 0.5), record("jys", 8, 0.4), record("uniform", 512, 0.1, seed=100),
                          record("jys", 8, 0.9, seed=100)], model="folk-tauldr")
    (tmp_path / "folk" / "floor.json").write_text(json.dumps(
        {"schedule": "heldout", "num_samples": 64, "metrics": {"hellinger_ref": 0.05}}))
    spec = spec_for("folk")
    records = with_floor(collect(tmp_path, spec), tmp_path, spec)
    roles = sorted((r["role"], r["schedule"], r.get("nfe_calls")) for r in records)
    assert roles == [("cell", "jys", 8), ("cell", "uniform", 8), ("floor", "heldout", None),
                     ("reference", "uniform", 512)]  # the seed-100 JYS cell belongs to no table
    text = markdown(records, spec.metrics[0])
    assert "reference (m, euler, uniform, NFE 512, seed 100): 0.1000" in text
    assert "held-out data (the floor), 64 sequences: 0.0500" in text


def test_an_ablations_schedules_are_kept_on_request_and_listed_after_the_standard_ones(tmp_path):
    write_runs(tmp_path, [record("jys-oshuffle", 8, 0.3), record("jys", 8, 0.4), record("uniform", 8, 0.5)],
               model="folk-tauldr")
    spec = spec_for("folk")
    assert sorted(r["schedule"] for r in collect(tmp_path, spec)) == ["jys", "uniform"]
    records = collect(tmp_path, spec, schedules=("uniform", "jys", "jys-oshuffle"))
    rows = [line.split(" | ")[2] for line in markdown(records, spec.metrics[0]).splitlines()[2:5]]
    assert rows == ["uniform", "jys", "jys-oshuffle"]


def test_collect_without_records_names_the_command(tmp_path):
    with pytest.raises(ResultsError, match="bash scripts/count.sh"):
        collect(tmp_path, spec_for("count"))


def test_spec_lookup():
    assert spec_for("folk_twin").models == ("oracle",)
    assert spec_for("folk_twin").metrics == spec_for("folk").metrics  # the music protocol on the twin
    for twin in ("text_twin", "digits_twin"):  # judged by the chain, as their configs' metrics say
        assert spec_for(twin).metrics[0].key == "chain_nll" and spec_for(twin).quality_nfe is None
    assert spec_for("digits_twin").unit == "image"
    assert spec_for("piano").metrics == spec_for("folk").metrics
    assert spec_for("cifar10").metrics[0].key == "fid"
    assert spec_for("text", quality_nfe=1024).quality_nfe == 1024
    with pytest.raises(ValueError, match="no results spec for experiment 'nope'; known: chain, chain_gauss, cifar10, count"):
        spec_for("nope")


def test_record_refuses_to_drop_committed_cells_unless_replaced(tmp_path):
    """record: a committed record is kept whole; a table lacking one of its seeds (made without the --add that
    joined it) is refused, naming the seed and the remedy; --replace overwrites; a superset is recorded."""
    runs, records_dir = tmp_path / "runs", tmp_path / "records"
    records_dir.mkdir()
    both = [record("uniform", 8, 0.5) | {"role": "cell"}, record("uniform", 8, 0.6, seed=1) | {"role": "cell"}]
    (records_dir / "folk.json").write_text(json.dumps(both))
    write_results(runs, "folk", both[:1])
    with pytest.raises(ResultsError, match=r"lacks 1 cell\(s\) .*m euler uniform, 8 calls, seed 1.*--add .*--replace"):
        commit_records(runs, "folk", records_dir)
    assert json.loads((records_dir / "folk.json").read_text()) == both  # untouched
    commit_records(runs, "folk", records_dir, replace=True)
    assert json.loads((records_dir / "folk.json").read_text()) == both[:1]
    write_results(runs, "folk", both + [record("jys", 8, 0.4) | {"role": "cell"}])
    commit_records(runs, "folk", records_dir)
    assert len(json.loads((records_dir / "folk.json").read_text())) == 3
    # a rerun of the same cells (other values, samples files, a default written out) is no loss
    rerun = [r | {"metrics": {"hellinger_ref": 0.9}, "samples_file": "runs/x.npz", "multi_jump": "reject"}
             for r in json.loads((records_dir / "folk.json").read_text())]
    write_results(runs, "folk", rerun)
    commit_records(runs, "folk", records_dir)
    assert json.loads((records_dir / "folk.json").read_text()) == rerun
    # another multi-jump rule is another row: its cells do not stand in for the committed ones
    write_results(runs, "folk", [r | {"multi_jump": "accept"} for r in rerun])
    with pytest.raises(ResultsError, match="lacks 3 cell"):
        commit_records(runs, "folk", records_dir)


def test_pages_regenerate_marked_blocks_from_committed_records(tmp_path):
    records_dir = tmp_path / "records"
    records_dir.mkdir()
    (records_dir / "folk.json").write_text(json.dumps([record("uniform", 8, 0.5) | {"role": "cell"},
                                                       record("jys", 8, 0.4) | {"role": "cell"}]))
    page = tmp_path / "page.md"
    page.write_text("intro\n<!-- results: folk hellinger_ref -->\nstale\n<!-- /results -->\n"
                    "<!-- results: summary all -->\n<!-- /results -->\nend\n")
    assert pages.regenerate([page], records_dir) == [page]
    text = page.read_text()
    assert "stale" not in text and text.startswith("intro\n") and text.endswith("end\n")
    assert "| m | euler | jys | **0.4000** |" in text
    assert "| [folk](docs/results/music.md) | m | euler | hellinger_ref | **jys 0.4000** |" in text
    assert pages.regenerate([page], records_dir) == []  # idempotent
    page.write_text("<!-- results: folk no_such_metric -->\n<!-- /results -->\n")
    with pytest.raises(ResultsError, match="no_such_metric"):
        pages.regenerate([page], records_dir)


def test_two_call_steps_stand_under_the_budget_they_were_made_for(tmp_path):
    """θ-trapezoidal at 8 calls takes (8 − 1)//2 = 3 steps, 7 calls: its cell stands in the NFE 8 column beside
    Euler's 7 steps, saying the calls it spent; a second record of one cell and seed is refused."""
    euler = record("jys", 8, 0.4) | {"nfe": 7}
    trap = record("jys", 7, 0.3, sampler="trapezoidal") | {"nfe": 3}
    write_runs(tmp_path, [euler, trap], model="folk-tauldr")
    records = collect(tmp_path, spec_for("folk"), nfes=[8])
    text = markdown(records, spec_for("folk").metrics[0])
    assert text.splitlines()[2:] == ["| m | euler | jys | 0.4000 |", "| m | trapezoidal | jys | 0.3000 (7 calls) |"]
    write_runs(tmp_path / "again", [euler, euler | {"metrics_file": "copy"}], model="folk-tauldr")
    with pytest.raises(ResultsError, match=r"are the same cell \('m', 'euler', 'jys'\) at 8 calls, seed 0"):
        collect(tmp_path / "again", spec_for("folk"), nfes=[8])


def test_the_peers_block_is_generated_from_its_record(tmp_path):
    """A page's `<!-- results: peers count:oracle -->` block: the pair's table at the budgets its records hold,
    JYS's best combination against the best peer alone with the difference in standard errors."""
    records_dir = tmp_path / "records"
    records_dir.mkdir()
    base = {"experiment": "count", "model": "oracle", "seed": 0, "model_calls": 8.0}
    rows = [base | {"sampler": "dus", "schedule": "geometric", "budget": 8, "value": 0.05, "value_se": 0.003},
            base | {"sampler": "dus", "schedule": "jys", "budget": 8, "value": 0.04, "value_se": 0.004}]
    (records_dir / "peers.json").write_text(json.dumps(rows))
    page = tmp_path / "peers.md"
    page.write_text("<!-- results: peers count:oracle -->\n<!-- /results -->\n")
    pages.regenerate([page], records_dir)
    text = page.read_text()
    assert "| dus / geometric | 0.0500 ± 0.0030 |" in text and "| dus / jys | 0.0400 ± 0.0040 |" in text
    assert "best JYS combination dus / jys 0.0400 ± 0.0040 vs best peer alone dus / geometric" in text
    assert "difference +0.0100 ± 0.0050 (+2.0 s.e.)" in text


def test_the_grids_block_is_generated_from_a_grid_table_record(tmp_path):
    """`<!-- results: grids count/grids-euler-x -->`: the summary of that record (uniform, cosine, the best power grid
    with its q, J's optimum with its s.e. over sampling seeds, ρ); a record that is not committed is refused by its path."""
    folder = tmp_path / "records" / "grids" / "count" / "oracle"
    folder.mkdir(parents=True)
    cells = {f"{n}@4": {"countdown_error": v, "J": j, "J_se": 0.1} for n, v, j in
             [("uniform", 0.3, 9.0), ("cosine", 0.2, 5.0), ("power2", 0.15, 4.0), ("power3", 0.18, 4.5),
              ("jys", 0.19, 4.2), ("dp", 0.14, 3.0)]}
    cells["dp@4"]["countdown_error_se"] = 0.002  # a run with several sampling seeds
    cells["spearman@4"] = {"countdown_error": 0.97}
    (folder / "grids-euler-x.json").write_text(json.dumps({"settings": {}, "cells": cells}))
    page = tmp_path / "jys.md"
    page.write_text("<!-- results: grids count/grids-euler-x -->\n<!-- /results -->\n")
    pages.regenerate([page], tmp_path / "records")
    text = page.read_text()
    assert "| best power grid (q) | 0.1500 (2) |" in text and "| **JYS: J optimum (DP)** | 0.1400 ± 0.0020 |" in text
    assert "| ρ(J, countdown_error) | 0.97 |" in text
    page.write_text("<!-- results: grids count/grids-euler-y -->\n<!-- /results -->\n")
    with pytest.raises(ResultsError, match="grids-euler-y.json is not a committed record"):
        pages.regenerate([page], tmp_path / "records")


def test_a_benchmark_table_is_saved_as_a_record_and_drawn_on_its_page(tmp_path, capsys):
    """results.bench: rows print as they are measured; the saved record (command, date, machine) renders as the page's
    `<!-- results: bench NAME -->` block; a row of the wrong width and a record that is not committed are refused."""
    from results.bench import BenchTable

    table = BenchTable("speed", ["precision", "s/step"], "Two threads.", records_dir=tmp_path / "records",
                       runs_dir=tmp_path / "runs")
    table.row("fp32", "1.250")
    table.row("bf16 autocast", "0.800")
    with pytest.raises(ValueError, match="a row of 1 cells"):
        table.row("fp16")
    path = table.save()
    assert "bf16 autocast" in capsys.readouterr().out
    saved = json.loads(path.read_text())
    assert saved["rows"] == [["fp32", "1.250"], ["bf16 autocast", "0.800"]] and saved["machine"] and saved["command"]
    page = tmp_path / "benchmarks.md"
    page.write_text("<!-- results: bench speed -->\nold\n<!-- /results -->\n")
    pages.regenerate([page], tmp_path / "records")
    text = page.read_text()
    assert "| precision | s/step |\n|---|---|\n| fp32 | 1.250 |\n| bf16 autocast | 0.800 |" in text
    assert "Two threads." in text and "old" not in text
    saved["rows"].append(["fp16"])  # a record edited into a row of the wrong width
    path.write_text(json.dumps(saved))
    with pytest.raises(ResultsError, match="cells do not match"):
        pages.regenerate([page], tmp_path / "records")
    page.write_text("<!-- results: bench other -->\n<!-- /results -->\n")
    with pytest.raises(ResultsError, match="other.json is not a committed record"):
        pages.regenerate([page], tmp_path / "records")


def test_a_benchmark_run_with_other_arguments_keeps_the_committed_record(tmp_path, monkeypatch):
    """A partial run (other arguments than the committed record's command) saves under runs/, not over the page's
    record; the same command replaces it."""
    from results.bench import BenchTable

    def run(argv, cell):
        monkeypatch.setattr("sys.argv", argv)
        table = BenchTable("speed", ["precision", "s/step"], records_dir=tmp_path / "records", runs_dir=tmp_path / "runs")
        table.row("fp32", cell)
        return table.save()

    committed = run(["benchmarks/speed.py"], "1.0")
    assert committed == tmp_path / "records" / "benchmarks" / "speed.json"
    partial = run(["benchmarks/speed.py", "--precision", "bf16"], "0.5")
    assert partial == tmp_path / "runs" / "benchmarks" / "speed.json"
    assert json.loads(committed.read_text())["rows"] == [["fp32", "1.0"]]
    assert json.loads(partial.read_text())["command"] == "python benchmarks/speed.py --precision bf16"
    assert run(["benchmarks/speed.py"], "0.9") == committed and json.loads(committed.read_text())["rows"] == [["fp32", "0.9"]]
    assert run([str(ROOT / "benchmarks" / "speed.py")], "0.8") == committed  # the same script named otherwise


def test_grid_table_seeds_are_summarized_by_mean_and_standard_error():
    cell = seed_summary([{"chain_nll": 2.0, "bigram_tv": 0.1}, {"chain_nll": 2.3, "bigram_tv": 0.3},
                         {"chain_nll": 2.6, "bigram_tv": 0.2}])
    assert cell["chain_nll"] == pytest.approx(2.3) and cell["bigram_tv"] == pytest.approx(0.2)
    assert cell["chain_nll_se"] == pytest.approx(0.3 / 3 ** 0.5)  # sd 0.3 over 3 seeds
    assert cell["bigram_tv_se"] == pytest.approx(0.1 / 3 ** 0.5)
    assert seed_summary([{"chain_nll": 2.0}]) == {"chain_nll": 2.0}  # one seed: no standard error
    with pytest.raises(ValueError, match="at least one sampling seed"):
        seed_summary([])


def test_grid_table_rerun_keeps_other_budgets_only_under_the_same_settings():
    prior = {"settings": {"num": 512}, "cells": {"uniform@4": {"J": 1.0}, "uniform@8": {"J": 2.0},
                                                 "spearman@8": {"chain_nll": 0.5}}}
    assert kept_cells(prior, {"num": 512}, [4]) == {"uniform@8": {"J": 2.0}, "spearman@8": {"chain_nll": 0.5}}
    assert kept_cells(prior, {"num": 128}, [4]) == {}
    assert kept_cells({}, {"num": 512}, [4]) == {}


def test_the_exact_block_tabulates_each_variants_optimum(tmp_path):
    def run(rule, weight, dp_kl, rho):
        grids = {"uniform": {"kl_data_samples": 0.5, "bigram_tv": 0.2}, "cosine": {"kl_data_samples": 0.6, "bigram_tv": 0.3},
                 "power0.1": {"kl_data_samples": 0.04, "bigram_tv": 0.02}, "power2": {"kl_data_samples": 0.7, "bigram_tv": 0.4},
                 "dp": {"kl_data_samples": dp_kl, "bigram_tv": 0.01}}
        return {"settings": {"chain": "countdown", "sampler": "euler", "states": 4, "length": 5, "rule": rule,
                             "weight": weight}, "cells": {"16": {"grids": grids, "spearman": {"kl_data_samples": rho}}}}
    folder = tmp_path / "exact"
    folder.mkdir()
    for rule, weight, kl, rho in (("sampler", "none", 0.05, 0.6), ("none", "none", 0.009, 0.98)):
        (folder / f"countdown-euler-{'none' if rule == 'none' else 'plain'}.json").write_text(json.dumps(run(rule, weight, kl, rho)))
    block = pages.generated("exact", "countdown-euler", tmp_path)
    assert "| best power grid (q) | 0.0400 / 0.0200 (0.1) |" in block
    assert "| J optimum, the sampler's step term (`jys.rule=sampler`) | 0.0500 / 0.0100 (ρ 0.60) |" in block
    assert "| J optimum, no step term (`jys.rule=none`) | 0.0090 / 0.0100 (ρ 0.98) |" in block
    with pytest.raises(ResultsError, match="no docs/records/exact/other"):
        pages.generated("exact", "other", tmp_path)


def test_the_exact_block_refuses_records_of_other_settings(tmp_path):
    folder = tmp_path / "exact"
    folder.mkdir()
    grids = {n: {"kl_data_samples": 0.1, "tv": 0.1, "bigram_tv": 0.1} for n in ("uniform", "cosine", "power1", "dp")}
    for rule, eps in (("sampler", 1e-3), ("none", 1e-2)):
        rec = {"settings": {"chain": "c", "sampler": "euler", "eps": eps, "rule": rule, "weight": "none"},
               "cells": {"4": {"grids": grids, "spearman": {"kl_data_samples": 1.0}}}}
        (folder / f"c-euler-{'none' if rule == 'none' else 'plain'}.json").write_text(json.dumps(rec))
    with pytest.raises(ResultsError, match="different settings \\(eps\\)"):
        pages.generated("exact", "c-euler", tmp_path)


def test_the_ablation_block_tabulates_klub_samples_by_hand(tmp_path):
    def cell(model, calls, value, k=None, seed=None, schedule="jys-girsanov-hierarchy"):
        r = {"model": model, "sampler": "euler", "schedule": schedule, "nfe_calls": calls,
             "metrics": {"countdown_error": value}}
        return r if k is None else {**r, "klub_samples": k, "search_seed": seed}
    records = [cell("oracle", 8, 0.04, 16, 0), cell("oracle", 8, 0.06, 16, 1), cell("oracle", 8, 0.10, 4, 0),
               cell("oracle", 8, 0.20, schedule="uniform"), cell("oracle", 16, 0.02, 16, 0)]
    (tmp_path / "ablation_klub.json").write_text(json.dumps(records))
    block = pages.generated("ablation", "klub", tmp_path).splitlines()
    assert block[0] == "| model | NFE | uniform | K = 4 | K = 16 |"
    assert block[2] == "| oracle | 8 | 0.2000 | 0.1000 (0.1000-0.1000, 1) | 0.0500 (0.0400-0.0600, 2) |"
    assert block[3] == "| oracle | 16 | - | - | 0.0200 (0.0200-0.0200, 1) |"
    with pytest.raises(ResultsError, match="ablation 'other'"):
        pages.generated("ablation", "other", tmp_path)


def test_the_peers_table_leaves_out_dus_in_a_users_order(tmp_path):
    from results.peers import collect as peers_collect

    folder = tmp_path / "text" / "m" / "metrics"
    folder.mkdir(parents=True)
    base = {"sampler": "dus", "schedule": "jys", "nfe_calls": 8, "seed": 0, "metrics": {"gen_ppl": 250.0}}
    (folder / "dus-jys-nfe8.json").write_text(json.dumps(base))
    (folder / "dus-jys-nfe8-perm0123abcd.json").write_text(json.dumps(base | {"order_sha256": "0123abcd" + "0" * 56}))
    records = peers_collect(tmp_path, "text", "m", ["dus"], [8])
    assert [r["metrics_file"] for r in records] == ["dus-jys-nfe8.json"]


def test_the_repair_block_tabulates_each_way_against_the_shared_floor(tmp_path):
    from results.repair import repair_block
    ways = {"sampler": (0.9, 0.2), "leap+exact": (0.4, 0.1), "exact+rest": (0.35, 0.05), "exact": (0.25, 0.01)}
    row = {"grid": [1.0, 0.5, 0.2, 1e-5], "fine_steps": 4,
           **{w: {"chain_nll": n, "chain_nll_se": 0.01, "bigram_tv": b} for w, (n, b) in ways.items()}}
    (tmp_path / "repair").mkdir()
    record = {"experiment": "x", "sampler": "euler", "num": 8, "seed": 0, "rows": [row]}
    (tmp_path / "repair" / "x-euler.json").write_text(json.dumps(record))
    text = repair_block("x-euler", tmp_path)
    assert "| [1, 0.5, 0.2, ε]: the sampler | 0.9000 ± 0.0100 / 0.2000 | +0.6500 |" in text
    assert "| [1, 0.5, 0.2, ε]: its first leap, then 4 fine steps | 0.4000 ± 0.0100 / 0.1000 | +0.1500 |" in text
    assert "| [1, 0.5, 0.2, ε]: the process to t_1, then its other steps | 0.3500 ± 0.0100 / 0.0500 | +0.1000 |" in text
    assert "compounding (the later steps from the leap's states, over their own error) | | +0.4000 |" in text
    with pytest.raises(ResultsError, match="leap-repair"):
        repair_block("missing", tmp_path)
    for broken in ({**record, "rows": []}, {**record, "rows": [{k: v for k, v in row.items() if k != "exact"}]}):
        (tmp_path / "repair" / "x-euler.json").write_text(json.dumps(broken))
        with pytest.raises(ResultsError, match="rows|lacks"):
            repair_block("x-euler", tmp_path)


def test_leap_repair_runs_its_four_ways_on_a_tiny_oracle(tmp_path):
    """scripts/leap_repair.py end to end on CountDown's uniform-kernel oracle cut to 8 tokens: the four rows, the
    sampler's row equal to run_sampler's draws on the same grid and seed, the floor's offset 0."""
    import importlib.util

    from metrics.sequences import chain_nll
    from pipeline.build import oracle_setup
    from samplers.loop import run_sampler
    spec = importlib.util.spec_from_file_location("leap_repair", ROOT / "scripts" / "leap_repair.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    over = ["experiment.length=8", f"runs_dir={tmp_path}"]
    out = script.main(["count_uniform_const", "--grid", "1", "0.3", "0.1", "1e-05", "--num", "16", "--fine", "4",
                       "--out", str(tmp_path / "r.json"), *over])
    row = json.loads(out.read_text())["rows"][0]
    assert set(row) >= {"sampler", "leap+exact", "exact+rest", "exact"} and row["fine_steps"] == 4
    _, cfg, model = oracle_setup("count_uniform_const", "euler", over)
    x = run_sampler(model, "euler", torch.tensor([1.0, 0.3, 0.1, 1e-05], dtype=torch.float64), 16, 8, 0,
                    batch_size=16, final_step=str(cfg.final_step), progress=False).samples
    assert row["sampler"]["chain_nll"] == pytest.approx(chain_nll(x, model.data_chain, float(cfg.oracle.floor)))
