"""The generated parts of the Markdown pages, from the committed records (docs/records/<experiment>.json), so that
any machine regenerates every page without rerunning. A page marks each generated block:

    <!-- results: EXPERIMENT METRIC -->      the experiment's table of one metric (results.tables.markdown)
    <!-- results: summary all -->            the best schedule per NFE of every committed experiment
    <!-- results: peers EXPERIMENT:MODEL --> the peers table of one pair (docs/records/peers.json)
    <!-- results: grids EXPERIMENT/NAME -->   the summary of one oracle grid table (docs/records/grids/EXPERIMENT/
                                             oracle/NAME.json, a run of scripts/jys_grid_table.py)
    <!-- results: bench NAME -->             one benchmark's table (docs/records/benchmarks/NAME.json, saved by
                                             the benchmark, results.bench)
    <!-- results: exact NAME -->             the exact-law study of one chain and sampler (docs/records/exact/
                                             NAME-*.json, runs of scripts/exact_grid_kl.py; results.exact)
    <!-- results: ablation NAME -->          an ablation's table (docs/records/ablation_NAME.json: python -m results
                                             ablation, then python -m results record ablation_NAME)
    <!-- results: repair NAME -->            a grid's first leap against its later steps (docs/records/repair/
                                             NAME.json, a run of scripts/leap_repair.py; results.repair)
    ...(generated; replaced on every run)...
    <!-- /results -->
"""
from __future__ import annotations

import re
from pathlib import Path

from common.io import atomic_write_bytes
from results.ablation import table as ablation_table
from results.bench import bench_block
from results.exact import exact_block
from results.grids import summary as grids_summary
from results.onpolicy import onpolicy_block
from results.peers import pair_table
from results.records import RECORDS, ResultsError, committed, load_results
from results.repair import repair_block
from results.specs import spec_for
from results.tables import best_schedules, markdown, mean, rows_of

ROOT = Path(__file__).resolve().parents[1]
PAGES = (ROOT / "README.md", *sorted((ROOT / "docs" / "results").glob("*.md")))
BLOCK = re.compile(r"(<!-- results: (\S+) (\S+) -->\n)(.*?)(<!-- /results -->)", re.DOTALL)
LINKS = {"count": "docs/results/count.md", "digits": "docs/results/image.md", "folk": "docs/results/music.md",
         "text": "docs/results/text.md"}


def summary(records_dir: Path = RECORDS) -> str:
    """A row per committed experiment, model and sampler: at each NFE the best schedule and its value."""
    lines = []
    files = sorted(p for p in Path(records_dir).glob("*.json"))
    nfes_all = set()
    rows_all = []
    for path in files:
        experiment = path.stem
        if "+" in experiment or experiment == "peers":
            continue  # another table of an experiment (count+solvers): its page shows it
        try:
            spec = spec_for(experiment)
        except ValueError:
            continue  # a record of another shape (peers, an ablation): no row here
        metric = spec.metrics[0]
        records = load_results(path)
        rows = rows_of(records, metric, roles=("cell",))
        best = best_schedules(rows, metric)
        for model, sampler in sorted({k[:2] for k in rows if k[2] == "jys"}, key=lambda k: (k[0] == "oracle", k)):
            cells = {n: f"{best[(model, sampler, n)]} {mean(rows[(model, sampler, best[(model, sampler, n)])][n], metric.key):.{metric.digits}f}"
                     for (m, s, n) in best if (m, s) == (model, sampler)}
            nfes_all |= set(cells)
            link = LINKS.get(experiment.removesuffix("_twin"), f"docs/records/{experiment}.json")
            rows_all.append((f"[{experiment}]({link})", model, sampler, metric.key, cells))
    if not rows_all:
        raise ResultsError(f"no committed records under {records_dir}")
    nfes = sorted(nfes_all)
    lines = ["| experiment | model | sampler | metric | " + " | ".join(f"NFE {n}" for n in nfes) + " |",
             "|---|---|---|---|" + "---|" * len(nfes)]
    for name, model, sampler, key, cells in rows_all:
        lines.append(f"| {name} | {model} | {sampler} | {key} | " + " | ".join(
            (f"**{cells[n]}**" if cells[n].startswith("jys") else cells[n]) if n in cells else "-" for n in nfes) + " |")
    return "\n".join(lines)


def peers_block(pair: str, records_dir: Path = RECORDS) -> str:
    """The peers table of one experiment:model pair, from docs/records/peers.json (`python -m results record
    peers`), at the budgets its records hold."""
    exp, model = pair.split(":")
    records = [r for r in load_results(committed("peers", records_dir)) if (r["experiment"], r["model"]) == (exp, model)]
    if not records:
        raise ResultsError(f"docs/records/peers.json holds no records of {pair}")
    nfes = sorted({r["budget"] for r in records})
    return pair_table(exp, model, records, nfes) + "\n\nGenerated by `python -m results pages` from `docs/records/peers.json`."


def grids_block(what: str, records_dir: Path = RECORDS) -> str:
    """The summary of one grid table (uniform, cosine, the best power grid, the hierarchy, J's optimum; the rank
    correlation of J with the metric) from docs/records/grids/EXPERIMENT/oracle/NAME.json."""
    experiment, _, name = what.partition("/")
    path = Path(records_dir) / "grids" / experiment / "oracle" / f"{name}.json"
    if not path.is_file():
        raise ResultsError(f"a page asks for the grid table {what!r}; {path} is not a committed record "
                           "(python scripts/jys_grid_table.py, then python -m results grids --collect runs)")
    rel = path.relative_to(Path(records_dir).parent.parent) if Path(records_dir) == RECORDS else path
    return grids_summary(path) + f"\n\nGenerated by `python -m results pages` from `{rel}`."


def generated(experiment: str, what: str, records_dir: Path = RECORDS) -> str:
    if experiment == "summary":
        return summary(records_dir)
    if experiment == "peers":
        return peers_block(what, records_dir)
    if experiment == "grids":
        return grids_block(what, records_dir)
    if experiment == "bench":
        return bench_block(what, records_dir)
    if experiment == "exact":
        return exact_block(what, records_dir)
    if experiment == "repair":
        return repair_block(what, records_dir)
    if experiment == "onpolicy":
        return onpolicy_block(what, records_dir)
    if experiment == "ablation":
        path = committed(f"ablation_{what}", records_dir)
        if not path.is_file():
            raise ResultsError(f"a page asks for the ablation {what!r}; {path} is not a committed record")
        return ablation_table(load_results(path)) + (
            f"\n\nGenerated by `python -m results pages` from `docs/records/ablation_{what}.json`.")
    path = committed(experiment, records_dir)
    spec = spec_for(experiment)
    metric = next((m for m in spec.metrics if m.key == what), None)
    if metric is None:
        raise ResultsError(f"a page asks for metric {what!r} of {experiment}; its spec has "
                           f"{', '.join(m.key for m in spec.metrics)}")
    return markdown(load_results(path), metric, spec.unit) + (
        f"\n\nGenerated by `python -m results pages` from `docs/records/{experiment}.json`.")


def regenerate(pages=PAGES, records_dir: Path = RECORDS) -> list[Path]:
    """Rewrite every marked block of the pages; returns the pages that changed."""
    changed = []
    for page in pages:
        text = Path(page).read_text()
        new = BLOCK.sub(lambda m: m.group(1) + generated(m.group(2), m.group(3), records_dir) + "\n" + m.group(5), text)
        if new != text:
            atomic_write_bytes(page, new.encode())
            changed.append(Path(page))
    return changed
