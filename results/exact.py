"""The exact-law study's table (scripts/exact_grid_kl.py) as a page block, from its committed records.

    <!-- results: exact NAME -->   docs/records/exact/NAME-*.json: one record per J variant (step term plain,
                                   reach, none) of one chain and sampler

Rows: uniform, cosine and the best power grid (on the first metric; an oracle-only ceiling), then J's lattice optimum
under each variant; cells: KL(data ‖ samples) of the sampler's exact output law (TV to the data under the final
argmax, whose law is 0 where the data is not) / its bigram TV; ρ: Spearman's rank correlation over the grids between
that variant's J and the first metric.
"""
from __future__ import annotations

import json
from pathlib import Path

from results.records import RECORDS, ResultsError

KL, TV, SECOND = "kl_data_samples", "tv", "bigram_tv"
SHARED = ("chain", "sampler", "states", "length", "calls", "kernel", "sigma", "eps", "floor", "klub_samples", "lattice",
          "final")  # what every record of one table must share (the variants differ in weight and rule only)


def variant(settings: dict) -> str:
    """The J variant of a run: the sampler's step term as it is (plain), as it reaches the sample (reach), as the
    later steps keep it (suffix), kept or as it reaches the sample by that chance (mix), of the token's law given the
    context (marginal), survival-weighted (survival), or no step term (none; survival-none with the survival weight)."""
    weight = settings.get("weight", "none")
    if settings.get("rule") == "none":
        return "none" if weight == "none" else f"{weight}-none"
    return {"reach": "reach", "survival": "survival", "suffix": "suffix", "mix": "mix",
            "marginal": "marginal"}.get(weight, "plain")


def record_path(settings: dict, folder: Path) -> Path:
    """<chain>-<sampler>[-argmax]-<variant>.json: the records of one table share the name up to the variant."""
    final = "-argmax" if settings.get("final") == "argmax" else ""
    return Path(folder) / f"{settings['chain']}-{settings['sampler']}{final}-{variant(settings)}.json"


ORDER = ("plain", "reach", "suffix", "mix", "marginal", "survival", "none", "survival-none")
LABELS = {"plain": "J optimum, the sampler's step term (`jys.rule=sampler`)",
          "reach": "J optimum, the step term as it reaches x0 (`jys.weight=reach`)",
          "suffix": "J optimum, the step term kept by the later steps (`jys.weight=suffix`)",
          "mix": "J optimum, the step term kept, else as it reaches x0 (`jys.weight=mix`)",
          "marginal": "J optimum, the step term of the law given the context (`jys.weight=marginal`)",
          "survival": "J optimum, survival-weighted (`jys.weight=survival`)", "none": "J optimum, no step term (`jys.rule=none`)",
          "survival-none": "J optimum, survival-weighted, no step term"}


def exact_block(name: str, records_dir: Path = RECORDS) -> str:
    files = sorted((Path(records_dir) / "exact").glob(f"{name}-*.json"))
    if not files:
        raise ResultsError(f"a page asks for the exact-law table {name!r}; no docs/records/exact/{name}-*.json "
                           "(python scripts/exact_grid_kl.py, then copy its record there)")
    runs = {}
    for f in files:
        data = json.loads(f.read_text())
        runs[variant(data["settings"])] = data
    base = next(iter(runs.values()))
    budgets = list(base["cells"])
    for v, data in runs.items():
        if list(data["cells"]) != budgets:
            raise ResultsError(f"exact-law records of {name!r} cover different budgets ({v}: {list(data['cells'])}, "
                               f"others {budgets})")
        differ = [k for k in SHARED if data["settings"].get(k) != base["settings"].get(k)]
        if differ:
            raise ResultsError(f"exact-law records of {name!r} were made with different settings ({', '.join(differ)})")
    # under the final argmax the output law is 0 on some sequences the data has: KL(data ‖ samples) is infinite, TV is not
    first = TV if base["settings"].get("final") == "argmax" else KL

    def cell(g: dict) -> str:
        return f"{g[first]:.4f} / {g[SECOND]:.4f}"

    rows = {"uniform": [], "cosine": [], "best power grid (q)": []}
    for b in budgets:
        grids = base["cells"][b]["grids"]
        rows["uniform"].append(cell(grids["uniform"]))
        rows["cosine"].append(cell(grids["cosine"]))
        powers = {k: v[first] for k, v in grids.items() if k.startswith("power")}
        q = min(powers, key=powers.get)
        rows["best power grid (q)"].append(f"{cell(grids[q])} ({q.removeprefix('power')})")
    for v in [v for v in ORDER if v in runs]:
        rows[LABELS[v]] = [f"{cell(runs[v]['cells'][b]['grids']['dp'])} (ρ {runs[v]['cells'][b]['spearman'][first]:.2f})"
                           for b in budgets]
    st = base["settings"]
    what = "TV(samples, data)" if first == TV else "KL(data ‖ samples)"
    head = (f"| {st['chain']} S = {st['states']}, L = {st['length']}, {st['sampler']}"
            f"{', final argmax' if first == TV else ''} ({what} / bigram TV) | "
            + " | ".join(f"{b} calls" for b in budgets) + " |")
    lines = [head, "|---|" + "---|" * len(budgets)] + [f"| {n} | " + " | ".join(v) + " |" for n, v in rows.items()]
    rel = ", ".join(f"`docs/records/exact/{f.name}`" for f in files)
    return "\n".join(lines) + f"\n\nGenerated by `python -m results pages` from {rel}."
