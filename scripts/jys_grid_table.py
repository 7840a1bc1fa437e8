"""Every grid scored twice on the exact oracle: by the grid objective J (jys.lattice) and by its samples.

    python scripts/jys_grid_table.py EXPERIMENT [--sampler euler] [--calls 4 8 16 32] [--num 512]
        [--klub-samples 128] [--lattice 32] [--weight auto] [--powers ...] [--tag NAME] [--seeds 1] [--from RECORD]
        [Hydra overrides]

Grids per budget of model calls (grid steps + the noise-removal call, as `make demo` counts; count-grid
samplers such as k-Gillespie take one call per step and no noise removal, and their grids are unmasked-token
counts, on a lattice of counts L/(2·max(lattice, 2·steps)) apart): uniform,
cosine, the power grids t_i = 1 − (1 − ε)(i/N)^q, the hierarchical JYS search (`python -m jys
jys.search=hierarchy jys.objective=girsanov`, the default before the grid objective, and the overrides given), and the grid that minimizes J exactly over the lattice (dynamic
programming, jys.lattice.optimal_grids; under jys.end=denoise, the default for a drawn noise removal, over one step
more, the last made by the noise-removal call, and every grid's J read with ε appended, jys.schedule.charged_times). Each grid gets J ± s.e. on one lattice (common random numbers;
each grid on the base lattice plus its own points, so that every grid meets the same forward path on the
base), and the true metrics of `--num` samples (sampling
seed 0 for all; with `--seeds N` the mean over seeds 0 .. N-1 and its standard error over seeds): countdown error (absorbing CountDown) or chain NLL, and the bigram TV to the chain.
`--from RECORD` takes the grids and their J from a record of this script made with the same settings (its other
budgets kept) and only samples them, e.g. at more seeds; seed 0 must reproduce the record's metric. With a
condition prefix (an oracle twin of the music experiment) the paper's music protocol instead: every sample
continues a held-out prefix, and `hellinger_ref` is the note-histogram Hellinger distance to the same
sampler's NFE-512 continuations of the same prefixes (uniform grid, seed 100); beside it the bigram TV to the
chain given the prefixes. Every table also gives the token-entropy gap: the samples' mean per-sequence token entropy
minus the chain's own sequences' (continuations of the same prefixes), < 0 where a grid's samples collapse.
Prints a table per budget with Spearman's rank correlation between J and each metric over the grids, and
writes runs/<experiment>/oracle/grids-<sampler>[-<tag>].json; the samples' metrics of each grid are kept in
runs/<experiment>/oracle/grid-samples.json and reused by any rerun (they depend on the grid and seed alone).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from common.io import atomic_write_json, atomic_write_npz
from jys.lattice import WEIGHTS, PathLattice, lattice_size
from jys.schedule import charged_times, dp_steps
from metrics.music import hellinger_to, mean_and_se
from metrics.sequences import bigram_tv, chain_nll, chain_reference, countdown_error, token_entropy_gap
from pipeline.build import compose_config, oracle_metric, oracle_setup
from pipeline.experiment import experiment_of
from pipeline.runs import key_differences
from pipeline.search import grid_end, j_weight, lattice_points, optimize_config, settings_from, step_rule
from results.grids import kept_cells, seed_summary
from samplers.loop import run_sampler
from samplers.registry import COUNT_GRID, steps_for_calls
from samplers.schedules import POWERS, cosine, geometric_counts, power, times_from_counts, token_counts, uniform

ROOT = Path(__file__).resolve().parents[1]

HIERARCHY = ["jys.search=hierarchy", "jys.objective=girsanov", "jys.refine=none"]  # the JYS of the published search with today's KLUB (never refined)

def _counts(grid: list[float], process, length: int) -> list[int] | None:
    """A time grid's unmasked counts for a count-grid sampler; None where two steps share a count."""
    try:
        return token_counts(torch.tensor(grid, dtype=torch.float64), process, length)
    except ValueError:
        return None


def from_record(path: Path, settings: dict, calls: list[int], record=None) -> dict[int, dict[str, dict]]:
    """The grids cells of a record made with these settings (read from `path` unless given, already read), by
    budget: {calls: {grid name: cell}}; a record of other settings, or one without a budget asked for, is refused,
    naming what differs."""
    if not path.is_file():
        raise SystemExit(f"--from {path}: no such file (a grids record, e.g. docs/records/grids/<experiment>/oracle/"
                         "grids-<sampler>[-<tag>].json)")
    record = json.loads(path.read_text()) if record is None else record
    if not isinstance(record, dict) or not {"settings", "cells"} <= set(record):
        raise SystemExit(f"--from {path}: not a grids record (expected an object with settings and cells, as "
                         "scripts/jys_grid_table.py writes)")
    differ = key_differences(record["settings"], settings)
    if differ:
        raise SystemExit(f"--from {path}: made with other settings than this run's ({'; '.join(differ)})")
    out = {c: {name.split("@")[0]: cell for name, cell in record["cells"].items()
               if name.endswith(f"@{c}") and not name.startswith("spearman")} for c in calls}
    missing = [c for c, cells in out.items() if not cells]
    if missing:
        raise SystemExit(f"--from {path}: no grids for {missing} model calls (it has "
                         f"{sorted({int(n.split('@')[1]) for n in record['cells']})})")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("experiment")
    p.add_argument("--sampler", default="euler")
    p.add_argument("--calls", type=int, nargs="+", default=[4, 8, 16, 32])
    p.add_argument("--num", type=int, default=512, help="samples per cell")
    p.add_argument("--klub-samples", type=int, default=128, help="sequences of the lattice")
    p.add_argument("--lattice", type=int, default=32, help="uniform points of the base lattice (see base_lattice)")
    p.add_argument("--weight", default="auto", choices=["auto", *WEIGHTS],
                   help="J's weight (jys.weight; auto: jys.schedule.resolve_weight for this sampler and model)")
    p.add_argument("--objective", default=None, help="J's integrand (jys.klub OBJECTIVES); default jys.objective, "
                   "which also sets the hierarchical search's")
    p.add_argument("--powers", type=float, nargs="*", default=list(POWERS))
    p.add_argument("--tag", default="")
    p.add_argument("--no-hierarchy", action="store_true", help="leave out the published hierarchy's grid (its "
                   "golden-section levels cost many model calls: the text twin's)")
    p.add_argument("--seeds", type=int, default=1, help="sampling seeds per cell (0 .. N-1): each metric is their "
                   "mean, with its standard error over seeds (<metric>_se) from 2 on")
    p.add_argument("--from", dest="source", type=Path, help="a grids record made with the same settings (e.g. under "
                   "docs/records/grids/): its grids and their J are taken as they are and only sampled (more seeds), "
                   "with no search and no J read")
    a, overrides = p.parse_known_args()
    if a.seeds < 1:
        p.error(f"--seeds {a.seeds}: expected at least 1 sampling seed")
    overrides = [o for o in overrides if o != "--"]  # "--" ends a list option before the Hydra overrides
    base, cfg, model = oracle_setup(a.experiment, a.sampler, [f"jys.lattice={a.lattice}", *overrides])
    chain = model.data_chain.mixed(float(cfg.oracle.floor))
    eps, L = float(cfg.eps), int(cfg.experiment.length)
    experiment = experiment_of(cfg)
    K = experiment.prefix
    primary = "hellinger_ref" if K else oracle_metric(cfg, model)
    prefixes = experiment.prefixes(a.num)
    jys_settings = settings_from(cfg)
    if step_rule(jys_settings, a.sampler, model.process.kernel) == "trapezoidal":
        p.error("J of the θ-trapezoidal step's two leaps (jys.rule=sampler) is not tabulated here (its grids carry a θ per "
                "step); use python -m jys and python -m samplers (docs/results/solvers.md)")
    s = jys_settings.search
    rule = step_rule(jys_settings, a.sampler, model.process.kernel)
    end = grid_end(jys_settings, a.sampler)
    a.weight = j_weight(dataclasses.replace(jys_settings, weight=a.weight), rule, model, end)
    out = ROOT / cfg.runs_dir / a.experiment / "oracle" / f"grids-{a.sampler}{'-' + a.tag if a.tag else ''}.json"
    settings = {"overrides": base, "num": a.num, "klub_samples": a.klub_samples, "lattice": a.lattice,
                "weight": a.weight, "objective": a.objective, "model": model.identity(),
                "rule": rule,
                **({"hierarchy": False} if a.no_hierarchy else {}), "end": end}
    record = json.loads(a.source.read_text()) if a.source and a.source.is_file() else None
    source = from_record(a.source, settings, a.calls, record) if a.source else None
    prior = json.loads(out.read_text()) if out.is_file() else {}
    if a.source and prior.get("settings") != settings:  # a run --from a record extends it: its other budgets kept
        prior = record
    table = {"settings": settings, "cells": kept_cells(prior, settings, a.calls)}
    cache = out.parent / "grid-samples.json"
    saved = json.loads(cache.read_text()) if cache.is_file() else {}
    sampled = saved.get("cells", {}) if saved.get("model") == model.identity() else {}

    family = "count" if a.sampler in COUNT_GRID else "tau"
    t0 = time.time()
    grids: dict[int, dict[str, list[float]]] = {} if source is None else {
        calls: {name: cell["times"] for name, cell in cells.items()} for calls, cells in source.items()}
    for calls in a.calls if source is None else ():
        steps = steps_for_calls(a.sampler, calls)
        g = {"uniform": uniform(steps, eps).tolist(), "cosine": cosine(steps, eps).tolist()}
        g.update({f"power{q:g}": power(steps, q, eps).tolist() for q in a.powers})
        rec = None if a.no_hierarchy else json.loads(
            optimize_config(compose_config(base + [f"nfe={steps}"] + HIERARCHY), model).read_text())
        if family == "count":
            g = {name: _counts(grid, model.process, L) for name, grid in g.items()}
            g = {name: c for name, c in g.items() if c is not None}
            g["geometric"] = geometric_counts(steps, L)
            if rec:
                g["jys"] = rec["counts"]
        elif rec:
            g["jys"] = rec["times"]
        grids[calls] = g
    if source is None:
        print(f"hierarchical searches: {time.time() - t0:.0f} s", flush=True)

    t0 = time.time()
    x0 = experiment.sample_x0(a.klub_samples, torch.Generator().manual_seed(s.seed))
    objective = a.objective or s.objective

    def lattice_base(steps: int) -> list:  # the lattice jys.search=lattice uses for this many steps
        return lattice_points(a.lattice, L, model.process, "kgillespie" if family == "count" else "tau", eps,
                              dp_steps(steps, end))

    def lattice(points, steps):  # the base lattice, where every grid meets the same path, and the grid's points
        base_points = lattice_base(steps)
        order = sorted(set(points) | set(base_points), reverse=family == "tau")
        return PathLattice(model, x0, order, family, s.seed + 1, objective, s.coarse_state, a.weight, prefix=K,
                           batch_size=s.batch_size, base_points=lattice_size(a.lattice, dp_steps(steps, end)),
                           read_cache=reads, rule=rule)

    reads: dict = {}  # model reads by point, shared by the grids' lattices where their states agree (the base path)

    for calls in a.calls if source is None else ():  # the J optimum: jys.search=lattice, same settings (cached in runs/)
        steps = steps_for_calls(a.sampler, calls)
        lat_cfg = base + [f"nfe={steps}", "jys.search=lattice", f"jys.objective={objective}", f"jys.weight={a.weight}",
                          f"jys.lattice={a.lattice}", f"jys.lattice_samples={a.klub_samples}"]
        rec = json.loads(optimize_config(compose_config(lat_cfg), model).read_text())
        grids[calls]["dp"] = rec["counts"] if family == "count" else rec["times"]
        print(f"J optimum for {steps} steps on {rec['lattice_points']} points, {a.klub_samples} sequences, objective "
              f"{objective}: {time.time() - t0:.0f} s", flush=True)

    vocab = model.process.data_states

    def draw(grid: torch.Tensor, seed: int) -> torch.Tensor:
        return run_sampler(model, a.sampler, grid, a.num, L, seed, batch_size=512,
                           final_step=str(cfg.final_step), progress=False, prefix=prefixes,
                           multi_jump=str(cfg.multi_jump)).samples

    def reference() -> torch.Tensor:  # the music protocol's NFE-512 continuations, kept beside the cache
        path = out.parent / f"reference-{a.sampler}-{a.num}.npz"
        if path.is_file():
            with np.load(path) as f:
                if str(f["key"]) == json.dumps(model.identity(), sort_keys=True):
                    return torch.from_numpy(f["samples"].astype(np.int64))
        x = draw(uniform(511, eps), 100)
        atomic_write_npz(path, samples=x.numpy(), key=np.array(json.dumps(model.identity(), sort_keys=True)))
        return x

    def chain_ref(x: torch.Tensor) -> torch.Tensor:
        return chain_reference(x, chain, K, torch.Generator().manual_seed(100))

    def snap(grid):
        return list(grid) if family == "count" else [round(t, 12) for t in grid]

    def sampling_grid(grid):
        return times_from_counts(grid, model.process, L) if family == "count" else torch.tensor(grid, dtype=torch.float64)

    for calls in a.calls:
        steps = steps_for_calls(a.sampler, calls)
        g = grids[calls]
        print(f"\n{a.experiment}, {a.sampler}, {calls} model calls ({steps} steps), {a.num} samples; J weight={a.weight}")
        print(f"{'grid':>10}{'J':>12}{'± se':>9}{primary:>17}{'bigram_tv':>11}{'entropy_gap':>13}")
        rows = []
        base = set(lattice_base(steps))  # the points every grid of this budget reads (its reads kept between grids)
        for name, grid in g.items():
            per_seed = []
            for seed in range(a.seeds):
                # the samples' metrics depend on the grid and seed alone: shared by every tag and weight
                gkey = json.dumps([a.sampler, str(cfg.final_step), str(cfg.multi_jump), a.num, grid] + ([seed] if seed else []))
                if "entropy_gap" not in sampled.get(gkey, {}):  # (older caches lack the entropy gap without a prefix)
                    x = draw(sampling_grid(grid), seed)
                    if K:
                        sampled[gkey] = {"hellinger_ref": mean_and_se(hellinger_to(x, reference(), K, vocab))[0],
                                         "bigram_tv": bigram_tv(x, chain, K)}
                    else:
                        sampled[gkey] = {primary: countdown_error(x) if primary == "countdown_error" else chain_nll(x, model.data_chain,
                                                                                                 float(cfg.oracle.floor)),
                                         "bigram_tv": bigram_tv(x, chain)}
                    sampled[gkey]["entropy_gap"] = token_entropy_gap(x, chain_ref(x), K)
                    atomic_write_json(cache, {"model": model.identity(), "cells": sampled})
                per_seed.append(sampled[gkey])
            if source is not None and source[calls][name].get("seeds") == 1:  # the record's seed 0, drawn again
                here, there = per_seed[0][primary], source[calls][name][primary]
                if not np.isclose(here, there, rtol=1e-9, atol=0):
                    raise SystemExit(f"--from {a.source}: {name} at {calls} calls gives {primary} {here} at seed 0 "
                                     f"here and {there} in the record: its samples were made by other code or "
                                     "defaults, so its J is not this run's; run without --from")
            cell = {"times": grid, "seeds": a.seeds, **seed_summary(per_seed)}
            if source is not None:  # the record's J of this very grid (same settings)
                cell.update({k: source[calls][name][k] for k in ("J", "J_se", "J_terms")})
            else:
                read_on = snap(grid) if family == "count" else charged_times(snap(grid), round(eps, 12), end)
                jv = lattice(read_on, steps).grid_value(read_on, release=True)
                for key in [k for k in reads if k[0] not in base]:  # a grid's own points' reads serve it alone:
                    del reads[key]  # kept, they add up past the memory (text twin, 32 calls: 2 GB a grid)
                cell.update({"J": jv.value, "J_se": jv.se, "J_terms": jv.terms})
            table["cells"][f"{name}@{calls}"] = cell
            atomic_write_json(out, table)
            rows.append((name, cell))
            print(f"{name:>10}{cell['J']:>12.4g}{cell['J_se']:>9.2g}{cell[primary]:>17.4f}{cell['bigram_tv']:>11.4f}"
                  f"{cell['entropy_gap']:>13.4f}", flush=True)
        Js = [c["J"] for _, c in rows]
        rho_p = spearmanr(Js, [c[primary] for _, c in rows]).statistic
        rho_b = spearmanr(Js, [c["bigram_tv"] for _, c in rows]).statistic
        J = {name: c["J"] for name, c in rows}
        table["cells"][f"spearman@{calls}"] = {primary: rho_p, "bigram_tv": rho_b}
        print(f"Spearman(J, {primary}) = {rho_p:.2f}, Spearman(J, bigram_tv) = {rho_b:.2f}", flush=True)
        if "jys" in J and str(cfg.jys.get("refine", "none")) == "none":  # a refined dp row is no J optimum
            reach = (J["uniform"] - J["jys"]) / (J["uniform"] - J["dp"]) if J["uniform"] != J["dp"] else float("nan")
            table["cells"][f"spearman@{calls}"]["hierarchy_reach"] = reach
            print(f"the hierarchy reaches {reach:.0%} of the reduction of J from uniform to the lattice optimum")
        atomic_write_json(out, table)
    print(f"-> {out}")


if __name__ == "__main__":
    main()
