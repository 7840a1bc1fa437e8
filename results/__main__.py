"""The results layer's command line.

    python -m results table EXPERIMENT [--models M ..] [--samplers S ..] [--nfes N ..] [--add RECORD]..
                                                                    # runs/<exp>/results.json
    python -m results figure EXPERIMENT [--nfe 16] [--prefix 32] [--shape C H W] [--levels L]
                                        [--tokenizer FILE --vocab V]                     # runs/<exp>/figures/
    python -m results record EXPERIMENT [--tag T]  # runs/<exp>/results.json -> docs/records/<exp>[+T].json
    python -m results pages                  # the generated blocks of README.md and docs/results/*.md
    python -m results notebook               # executes figures.ipynb headless: the paper's figures under docs/
    python -m results peers --runs-of count:oracle .. --samplers .. --nfes ..
    python -m results ablation --out runs/ablation_klub --nfes 8 16
    python -m results grids [--collect runs]  # docs/jys_objective.md and docs/oracle_schedules.png from
                                              # docs/records/grids/ (scripts/jys_grid_table.py)

`--runs DIR` (default runs) everywhere. Records that cannot make one honest table (two model identities, sample
counts or judges) are refused with the command to rerun.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.io import save_figure
from results import ablation, figures, grids, pages, peers
from results.records import ResultsError, commit_records, load_results, results_path, write_results
from results.specs import SCHEDULES, spec_for
from results.tables import collect, tables, with_floor

ROOT = Path(__file__).resolve().parents[1]


def repo_relative(path: Path) -> str:
    """A path as committed records name it: relative to the repository where it lies inside it, else its name."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else path.name


def table(args) -> None:
    spec = spec_for(args.experiment, tuple(args.models) if args.models else None, args.quality)
    added = [r | {"added_from": repo_relative(path)} for path in args.add or () for r in load_results(path)]
    records = with_floor(collect(args.runs, spec, args.samplers, args.nfes, tuple(args.schedules), added),
                         args.runs, spec, added)
    floor = next((r for r in records if r["role"] == "floor"), None)
    judges = {r["metrics"].get("judge") for r in records if r["role"] != "floor"}
    if floor and "judge" in spec.identity and floor["metrics"].get("judge") not in judges:
        raise ResultsError(f"the floor of {args.experiment} was scored by judge {floor['metrics'].get('judge')!r}, "
                           f"the samples by {sorted(map(str, judges))}: rerun {spec.script}")
    path = write_results(args.runs, args.experiment, records)
    print(tables(records, spec))
    print(f"\n{len(records)} records -> {path}")


def figure(args) -> None:
    spec = spec_for(args.experiment)
    records = load_results(results_path(args.runs, args.experiment))
    out = Path(args.runs) / args.experiment / "figures"
    written = [save_figure(figures.experiment_figure(records, spec), out / f"{spec.metrics[0].key}_vs_nfe.png")]
    base = spec.experiment.removesuffix("_twin")
    if spec.unit == "image":
        sheet = figures.image_sheet(args.runs, records, args.nfe, records[0]["sampler"], shape=args.shape,
                                    levels=args.levels)
        if sheet is not None:
            written.append(save_figure(sheet, out / f"samples_nfe{args.nfe}.png"))
    elif base in ("folk", "piano"):
        rolls = figures.piano_rolls(args.runs, records, args.nfe, args.prefix)
        if rolls is not None:
            written.append(save_figure(rolls, out / f"rolls_nfe{args.nfe}.png"))
    elif base.startswith("text") and args.tokenizer:
        from results.text_samples import write_text_samples

        written.append(write_text_samples(args.runs, records, args.tokenizer, args.vocab))
    print("wrote " + ", ".join(map(str, written)))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m results", description=__doc__.split("\n\n")[0])
    ap.add_argument("command", choices=("table", "figure", "record", "pages", "notebook", "peers", "ablation", "grids"))
    ap.add_argument("experiment", nargs="?")
    ap.add_argument("--runs", default="runs")
    ap.add_argument("--models", nargs="+")
    ap.add_argument("--samplers", nargs="+")
    ap.add_argument("--nfes", nargs="+", type=int, help="model calls per sequence")
    ap.add_argument("--schedules", nargs="+", default=list(SCHEDULES),
                    help="table: the schedule labels kept (an ablation's, e.g. jys-oshuffle, beside the defaults)")
    ap.add_argument("--add", action="append", type=Path, help="table: the records of an earlier run (e.g. the "
                    "committed docs/records/<exp>.json; repeat for several) beside runs' own, as other sampling seeds "
                    "of the same cells; the same cell and seed twice, two grids in one cell, or other identities are "
                    "refused")
    ap.add_argument("--tag", help="record: commit as docs/records/<experiment>+<tag>.json, beside the main table")
    ap.add_argument("--replace", action="store_true", help="record: overwrite the committed record even where the "
                    "new table lacks some of its cells or seeds")
    ap.add_argument("--quality", type=int, help="table: the model-quality cell's NFE (uniform grid; spec default)")
    ap.add_argument("--nfe", type=int, default=16, help="figure: the NFE of the sample sheets and piano rolls")
    ap.add_argument("--prefix", type=int, default=32, help="figure: the music prefix")
    ap.add_argument("--shape", nargs=3, type=int, default=figures.DIGITS_SHAPE, help="figure: images' C H W")
    ap.add_argument("--levels", type=int, default=figures.DIGITS_LEVELS, help="figure: states per pixel")
    ap.add_argument("--tokenizer", help="figure: text's tokenizer file (decoded samples)")
    ap.add_argument("--vocab", type=int, default=4096, help="figure: text's data tokens (experiment.vocab)")
    ap.add_argument("--runs-of", nargs="+", help="peers: experiment:model pairs")
    ap.add_argument("--out", default="runs/ablation_klub", help="ablation: the ablation's run directory")
    ap.add_argument("--collect", type=Path, help="grids: copy RUNS/*/oracle/grids-*.json into the records first")
    ap.add_argument("--notebook", type=Path, default=ROOT / "figures.ipynb")
    ap.add_argument("--docs", default="docs", help="notebook: where the paper's figures go")
    args = ap.parse_args(argv)
    needs = {"table", "figure", "record"}
    if args.command in needs and not args.experiment:
        ap.error(f"{args.command} needs an EXPERIMENT")
    try:
        if args.command == "table":
            table(args)
        elif args.command == "figure":
            figure(args)
        elif args.command == "record":
            print(f"-> {commit_records(args.runs, args.experiment, tag=args.tag, replace=args.replace)}")
        elif args.command == "pages":
            changed = pages.regenerate()
            print("regenerated " + (", ".join(str(p.relative_to(ROOT)) for p in changed) or "nothing (up to date)"))
        elif args.command == "notebook":
            figures.execute_notebook(args.notebook, args.runs, args.docs)
            print(f"executed {args.notebook} with runs {args.runs}; figures under {args.docs}")
        elif args.command == "peers":
            if not (args.runs_of and args.samplers and args.nfes):
                ap.error("peers needs --runs-of, --samplers and --nfes")
            peers.report(Path(args.runs), args.runs_of, args.samplers, args.nfes)
        elif args.command == "ablation":
            if not args.nfes:
                ap.error("ablation needs --nfes")
            ablation.report(Path(args.out), args.nfes)
        elif args.command == "grids":
            grids.report(ROOT / "docs" / "records" / "grids", ROOT / "docs" / "jys_objective.md", args.collect,
                         figure=ROOT / "docs" / "oracle_schedules.png")
    except ResultsError as e:
        sys.exit(f"python -m results {args.command}: {e}")


if __name__ == "__main__":
    main()
