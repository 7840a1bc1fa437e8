"""A schedule file: cached, resumable levels (or J's lattice table), then the grid for the asked NFE.

`optimize(experiment, model, settings, nfe, sampler, out_dir)` takes plain values; `optimize_config(cfg)` is the
config's door to it (python -m jys).
"""
from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import DictConfig

from common import dist
from common.io import atomic_write_json
from jys.klub import check_coarse_state, check_objective
from jys.lattice import PathLattice, base_lattice, check_weight, lattice_size, optimal_grids
from jys.onpolicy import OnPolicyJ
from jys.order import ROUNDING, check_order, order_table, refined_draw, resolve_order, sampler_order
from jys.schedule import (ENDS, best_grid, charged_times, dp_steps, grid_thetas, lattice_span, lattice_table,
                          objective_for, resolve_end, resolve_rule, resolve_weight)
from jys.search import CountSearch, Level, SearchSettings, SearchState, TimeSearch, has_point
from models.process import mixing_time
from models.protocol import output_of
from pipeline.build import build_model
from pipeline.experiment import Experiment, experiment_of
from pipeline.runs import FORMAT_VERSION, cache_key, dus_order, jys_label, order_tag, run_dir, schedule_path
from samplers.registry import COUNT_GRID, check_prefix_support, check_sampler, spec
from samplers.schedules import (POWERS, beta, check_grid, cosine, first_count, power, times_from_counts, token_counts,
                                uniform)
from samplers.unmasking import dilated_order, order_digest

# auto | the published golden-section levels | J's exact optimum on a lattice | the Beta mask schedule's 2-D search
SEARCHES = ("auto", "hierarchy", "lattice", "beta")
REFINES = ("none", "onpolicy")  # jys.refine: after the lattice DP (jys.onpolicy)
STATES = ("data", "model")  # jys.states: the sequences J for a fixed order is read on
BETA_VALUES = tuple(round(0.1 * i, 1) for i in range(1, 11))  # arXiv 2509.13866's grid search: a, b ∈ {0.1, …, 1.0}


def resolve_search(search: str) -> str:
    """auto: 'lattice' (J's exact optimum) for every kernel: J ranks grids as the samples do on the oracles of each
    kind (docs/jys_objective.md); ordinal kernels read the frozen-denoiser path from the model's denoiser
    (jys.klub.context_posterior). 'hierarchy' is the published golden-section search, with its step 1 → t_mix."""
    if search not in SEARCHES:
        raise ValueError(f"unknown jys.search {search!r}; expected one of {SEARCHES}")
    return "lattice" if search == "auto" else search


@dataclass(frozen=True)
class JYSSettings:
    """Everything the search reads, as plain values (`settings_from` reads them from the config, once, and checks
    them): the KLUB search's settings, which search (`jys.search`), J's weight and one-step rule, the lattice's
    size and sequences, a forced t_mix, and τ-leaping's multi-jump rule (for the rule's step term)."""
    search: SearchSettings
    kind: str = "auto"  # auto | hierarchy | lattice | beta (resolve_search)
    weight: str = "auto"  # auto | a jys.lattice WEIGHTS name (jys.schedule.resolve_weight)
    rule: str = "auto"
    lattice: int = 32
    lattice_samples: int = 128
    t_mix: float | None = None  # None: the process's mixing time for search.mix_tv
    multi_jump: str = "reject"
    order: str = "auto"  # count-grid samplers: J for the sampler's fixed order of positions (jys.order)
    positions: tuple[int, ...] | None = None  # sampler=dus in a user's order (unmask.order); None: the dilated one
    refine: str = "none"  # none | onpolicy: the lattice optimum moved point by point on J read on the sampler's states
    refine_samples: int = 64
    end: str = "auto"  # auto | eps | denoise: where the grid ends (jys.schedule.resolve_end)
    final_step: str = "sample"  # the samplers' noise removal (config final_step), which jys.end=denoise makes a step
    states: str = "data"  # data | model: J for a fixed order read on the data's sequences or the model's own law

    @property
    def label(self) -> str:
        label = jys_label(self.search.objective, self.kind, self.weight, self.order)
        label = label if self.positions is None else label + order_tag(torch.tensor(self.positions))
        return label + ("-smodel" if self.states == "model" else "")  # J read on the model's own law


def settings_from(cfg: DictConfig) -> JYSSettings:
    """The config's jys.* (and eps, progress, multi_jump) as JYSSettings, each value checked here."""
    j = cfg.jys
    s = SearchSettings(num_samples=int(j.num_samples), batch_size=int(j.batch_size), objective=str(j.objective),
                       coarse_state=str(j.coarse_state),
                       tol=float(j.tol), rel_tol=float(j.rel_tol), max_iter=int(j.max_iter), margin=float(j.margin),
                       seed=int(j.seed), eps=float(cfg.eps), max_bytes=int(j.max_bytes), mix_tv=float(j.mix_tv),
                       progress=bool(cfg.progress))
    check_objective(s.objective)
    check_coarse_state(s.coarse_state)
    if s.num_samples < 1 or s.batch_size < 1 or s.max_iter < 1:
        raise ValueError(f"jys.num_samples, jys.batch_size and jys.max_iter must be >= 1, got "
                         f"{s.num_samples}, {s.batch_size}, {s.max_iter}")
    if not 0.0 < s.eps < 1.0:
        raise ValueError(f"eps must lie in (0, 1), got {s.eps}")
    if not 0.0 <= s.margin < 0.5:
        raise ValueError(f"jys.margin is a fraction of the interval width in [0, 0.5), got {s.margin}")
    kind = str(j.get("search", "auto"))
    if kind not in SEARCHES:
        raise ValueError(f"unknown jys.search {kind!r}; expected one of {SEARCHES}")
    lattice, lattice_samples = int(j.get("lattice", 32)), int(j.get("lattice_samples", 128))
    if lattice < 2:
        raise ValueError(f"jys.lattice must be >= 2, got {lattice}")
    if lattice_samples < 2:
        raise ValueError(f"jys.lattice_samples must be >= 2, got {lattice_samples}")
    order = check_order(str(j.get("order", "auto")))
    positions = dus_order(cfg)  # sampler=dus in a user's order (unmask.order)
    refine, refine_samples = str(j.get("refine", "none")), int(j.get("refine_samples", 64))
    if refine not in REFINES:
        raise ValueError(f"unknown jys.refine {refine!r}; expected one of {REFINES}")
    if refine_samples < 2:
        raise ValueError(f"jys.refine_samples must be >= 2, got {refine_samples}")
    end = str(j.get("end", "auto"))
    if end not in ENDS:
        raise ValueError(f"unknown jys.end {end!r}; expected one of {ENDS}")
    t_mix = j.get("t_mix")
    if t_mix is not None and not s.eps < float(t_mix) <= 1.0:
        raise ValueError(f"jys.t_mix must lie in (eps, 1], got {t_mix}")
    weight = str(j.get("weight", "auto"))
    check_weight(weight)
    states = str(j.get("states", "data"))
    if states not in STATES:
        raise ValueError(f"unknown jys.states {states!r}; expected one of {STATES}")
    return JYSSettings(search=s, kind=kind, weight=weight, rule=str(j.get("rule", "auto")),
                       lattice=lattice, lattice_samples=lattice_samples,
                       t_mix=None if t_mix is None else float(t_mix), multi_jump=str(cfg.get("multi_jump") or "reject"),
                       order=order, positions=None if positions is None else tuple(positions.tolist()),
                       refine=refine, refine_samples=refine_samples, end=end,
                       final_step=str(cfg.get("final_step") or "sample"), states=states)


def optimize_config(cfg: DictConfig, model=None) -> Path:
    """The config's door to `optimize`: its experiment, model (built unless given), settings, NFE and sampler;
    the schedule lands under runs/<experiment>/<model>/schedules/."""
    experiment = experiment_of(cfg)
    settings = settings_from(cfg)
    model = model if model is not None else build_model(cfg, experiment)
    return optimize(experiment, model, settings, cfg.nfe, str(cfg.sampler), run_dir(cfg))  # optimize checks nfe


def identity_of(model) -> dict:
    return model.identity() if hasattr(model, "identity") else {"name": getattr(model, "name", type(model).__name__)}


def optimize(experiment: Experiment, model, settings: JYSSettings, nfe: int, sampler: str, out_dir: Path) -> Path:
    """Write out_dir/schedules/<sampler>-<jys label>-nfe<N>.json (the JYS grid of `nfe` steps for `sampler` on
    `model`, searched on x_0 from `experiment`) and return its path. Levels and lattice tables are cached under
    out_dir/schedules/search/, keyed on everything that fixes them."""
    if not isinstance(nfe, int) or nfe < 1:
        raise ValueError(f"nfe must be an integer >= 1, got {nfe!r}")
    check_sampler(sampler, model.process)
    if not spec(sampler).schedule:
        raise ValueError(f"{sampler} takes no schedule (first_hitting is exact, eb chooses its counts as it goes); "
                         f"JYS serves euler, tau_leaping, tweedie and the count-grid samplers {', '.join(COUNT_GRID)}")
    length, prefix = experiment.length, experiment.prefix
    # Count-grid samplers share k-Gillespie's search over unmasked-token counts (the KLUB of uniformly chosen
    # positions; see docs/results/peers.md): one search state serves all three.
    family = "kgillespie" if sampler in COUNT_GRID else "tau"
    if family == "kgillespie" and nfe > length:
        raise ValueError(f"{sampler} unmasks at least one token per step: nfe={nfe} exceeds length {length}")
    if prefix:
        check_prefix_support(sampler)
    rule = step_rule(settings, sampler, model.process.kernel)
    if rule == "trapezoidal" and resolve_search(settings.kind) == "hierarchy":
        raise ValueError("jys.rule=sampler for sampler=trapezoidal is J of its two leaps, which the lattice and beta "
                         "searches take; the hierarchy has no such term (use jys.rule=auto with it)")
    s = dataclasses.replace(settings.search, objective=objective_for(settings.search.objective, model.process.kernel,
                                                                      rule))
    if family == "kgillespie" and resolve_order(settings.order, sampler) != "random":
        if resolve_search(settings.kind) == "lattice":
            given = {k: v for k, v in (("objective", settings.search.objective), ("weight", settings.weight),
                                       ("rule", settings.rule)) if v != "auto" and (k, v) != ("weight", "none")}
            if given:
                raise ValueError(f"J for {sampler}'s order has no {', '.join(f'jys.{k}' for k in given)} (got "
                                 f"{given}); leave them at their defaults, or set jys.order=random")
            return _optimize_order(experiment, model, settings, s, nfe, sampler, out_dir)
        if settings.order != "auto":  # auto: the other searches take the uniform-position KLUB
            raise ValueError(f"jys.order={settings.order} is searched by jys.search=lattice (its J is additive over "
                             f"steps), not jys.search={settings.kind}")
    if settings.states != "data":
        raise ValueError(f"jys.states={settings.states} is read by J for DUS's fixed order (sampler=dus under "
                         f"jys.search=lattice); sampler={sampler} with jys.order={settings.order} and jys.search="
                         f"{settings.kind} reads its J on the data's sequences")
    if settings.order != "auto" and family != "kgillespie":
        raise ValueError(f"jys.order={settings.order} is for count-grid samplers ({', '.join(COUNT_GRID)}); {sampler} "
                         "takes none")
    if settings.refine != "none":
        check_refine(settings, sampler, family, model.process.kernel, rule)
    if settings.end == "denoise" and (resolve_search(settings.kind) != "lattice" or family != "tau"):
        raise ValueError(f"jys.end=denoise is placed by the lattice search of a time grid; got jys.search="
                         f"{settings.kind} and sampler={sampler}")
    if resolve_search(settings.kind) == "lattice":
        return _optimize_lattice(experiment, model, settings, s, nfe, sampler, family, out_dir)
    if settings.kind == "beta":
        return _optimize_beta(experiment, model, settings, nfe, sampler, family, out_dir)
    if family == "kgillespie":
        t_mix = 1.0
    else:
        t_mix = settings.t_mix if settings.t_mix is not None else mixing_time(model.process, s.mix_tv)
    searcher = (CountSearch(model, experiment.sample_x0, s, length) if family == "kgillespie"
                else TimeSearch(model, experiment.sample_x0, s, length, t_mix, prefix))
    identity = identity_of(model)
    speed_only = ("progress", "batch_size", "max_bytes")
    key, digest = cache_key("search", {
        "family": family, "model": identity, "experiment": experiment.config,  # metrics and models fix no level
        "settings": {k: v for k, v in dataclasses.asdict(s).items() if k not in speed_only}, "t_mix": t_mix,
        "data": experiment.identity(), **_ordinal_key(model.process.kernel)})
    state_file = out_dir / "schedules" / "search" / f"{family}-{s.objective}-{digest}.json"
    state = SearchState()
    if state_file.is_file():
        saved = json.loads(state_file.read_text())
        if saved.get("key") == key:
            state = SearchState([Level(**d) for d in saved["levels"]], saved["wall_time"])
            print(f"resuming the search from {state_file} ({len(state.levels)} levels cached)")
    start = searcher.start()
    descending = start[0] > start[-1]

    def refine(grid, level):  # a level's candidates all inserted
        return sorted(set(grid) | {level.points[i] for i in range(len(level.points)) if has_point(level, i)},
                      reverse=descending)

    if not state.levels and searcher.fixed_mixing_step():  # level 0: the one step 1 → t_mix
        state.levels.append(Level([t_mix], [math.inf], 0, 0, 0))
    grid = list(start)
    for level in state.levels:
        grid = refine(grid, level)
    while len(grid) - 1 < nfe:
        t0 = time.time()
        level = searcher.level(grid, len(state.levels))
        state.levels.append(level)
        state.wall_time += time.time() - t0
        if dist.is_main():
            atomic_write_json(state_file, {"key": key, "levels": [dataclasses.asdict(lv) for lv in state.levels],
                                           "wall_time": state.wall_time})
        new_grid = refine(grid, level)
        if len(new_grid) == len(grid):
            raise ValueError(f"no interval of the {len(grid) - 1}-step grid can take another point; nfe={nfe} is out of reach")
        grid = new_grid
    points = state.grid(start, nfe)
    used = _levels_used(state, start, nfe)
    record = {"label": settings.label, "times": None, "nfe": nfe, "sampler": sampler,
              "objective": s.objective, "process": experiment.config["process"], "experiment": experiment.name,
              "model": identity, "num_samples": s.num_samples, "seed": s.seed,
              "search": key["settings"], "state_file": str(state_file),
              "klub_per_level": [lv.klub for lv in state.levels[:used]],
              "model_calls": sum(lv.model_calls for lv in state.levels[:used]),
              "sample_forwards": sum(lv.sample_forwards for lv in state.levels[:used]),
              "evaluations": sum(lv.evaluations for lv in state.levels[:used]), "t_mix": t_mix, "prefix": prefix,
              "format_version": FORMAT_VERSION,
              "wall_time": state.wall_time}
    return _write_schedule(out_dir, experiment, model, record, family, points)


def _write_schedule(out_dir: Path, experiment: Experiment, model, record: dict, family: str, points: list) -> Path:
    """Add the grid (times; for the count family its counts too) to the record and write the schedule file."""
    if family == "kgillespie":
        record["counts"] = [int(k) for k in points]
        points = times_from_counts(points, model.process, experiment.length).tolist()
    record["times"] = check_grid(torch.tensor(points, dtype=torch.float64)).tolist()
    path = schedule_path(out_dir, record["sampler"], record["label"], record["nfe"])
    if dist.is_main():
        atomic_write_json(path, record)
    dist.barrier()  # no rank reads a state file before rank 0 has written it
    return path


def lattice_points(lattice: int, length: int, process, family: str, eps: float, nfe: int) -> list[float]:
    """The lattice of the grid objective: times (base_lattice of n uniform points), or for the count family every
    count L/(2n) apart that some t < 1 reaches, with 0 and L; n = lattice_size(lattice, nfe) (at least 4·nfe), so that
    a grid of many steps still has lattice points to choose between."""
    n = lattice_size(lattice, nfe)
    if family == "kgillespie":
        low = first_count(process, length)
        return sorted({0, length} | {k for k in range(0, length + 1, max(1, length // (2 * n))) if k >= low})
    return base_lattice(n, eps)


def schedule_label(settings: JYSSettings, rule: str) -> str:
    """A schedule file's label: the settings' (jys_label), with '-rsampler' for J of the θ-trapezoidal step's two
    leaps (rule 'trapezoidal'), which is not the first-order J its sampler gets by default, and '-onpolicy' for the
    lattice optimum refined on J read on the sampler's states (jys.refine), '-eps' for jys.end=eps given (the grid
    at ε where 'auto' may make the noise removal its last step)."""
    return settings.label + ("-rsampler" if rule == "trapezoidal" else "") + \
        (f"-{settings.refine}" if settings.refine != "none" else "") + ("-eps" if settings.end == "eps" else "")


def step_rule(settings: JYSSettings, sampler: str, kernel) -> str:
    """jys.rule resolved for a sampler (jys.schedule.resolve_rule)."""
    return resolve_rule(settings.rule, sampler, kernel, settings.multi_jump)


def grid_end(settings: JYSSettings, sampler: str) -> str:
    """jys.end resolved for a sampler (jys.schedule.resolve_end); count-grid samplers' grids end at ε."""
    return "eps" if sampler in COUNT_GRID else resolve_end(settings.end, sampler, settings.final_step, settings.refine)


def j_weight(settings: JYSSettings, rule: str, model, end: str) -> str:
    """jys.weight resolved for J with this step rule, model and grid end (jys.schedule.resolve_weight)."""
    return resolve_weight(settings.weight, rule, model.process.kernel, output_of(model), end)


def _ordinal_key(kernel) -> dict:
    """Names, in a cache key, that ordinal kernels' 'auto' coarse state became the frozen-denoiser path (searches
    and tables cached before it read the current-state rates)."""
    return {"ordinal_coarse": "denoiser path from p(x0 | context)"} if kernel.ordinal else {}


def _to_json(values):
    """A table's nested lists with inf as None (JSON has no inf)."""
    return [_to_json(v) for v in values] if isinstance(values, list) else (values if math.isfinite(values) else None)


def _from_json(values):
    return [_from_json(v) for v in values] if isinstance(values, list) else (math.inf if values is None else values)


def _optimize_lattice(experiment: Experiment, model, settings: JYSSettings, s: SearchSettings, nfe: int, sampler: str,
                      family: str, out_dir: Path) -> Path:
    """jys.search=lattice: the grid of `nfe` steps that minimizes J (jys.lattice, weight jys.weight) exactly over
    the lattice's points, by dynamic programming. The table of D over all pairs of points is cached and serves
    every NFE."""
    M, prefix = settings.lattice_samples, experiment.prefix
    end = grid_end(settings, sampler)
    steps = dp_steps(nfe, end)
    points = lattice_points(settings.lattice, experiment.length, model.process, family, s.eps, steps)
    span = lattice_span(steps, settings.lattice, len(points))
    rule = step_rule(settings, sampler, model.process.kernel)
    weight = j_weight(settings, rule, model, end)
    identity = identity_of(model)
    key, digest = cache_key("lattice", {
        "search": "lattice", "family": family, "model": identity, "experiment": experiment.config,
        "objective": s.objective, "coarse_state": s.coarse_state, "seed": s.seed, "weight": weight,
        **({"rule": rule} if rule != "none" else {}), "lattice_samples": M, "points": points,
        "data": experiment.identity(), **({"max_span": span, "first_row": "full"} if span else {}),
        **({"end": "no read at count L"} if family == "kgillespie" else {}),  # tables before it read the model at t = 0
        **_ordinal_key(model.process.kernel)})
    table_file = out_dir / "schedules" / "search" / f"lattice-{family}-{s.objective}-{digest}.json"

    def forwards_of(calls: int) -> int:  # each point read once: ⌈M / batch⌉ calls of its M sequences
        return calls // -(-M // s.batch_size) * M

    saved = json.loads(table_file.read_text()) if table_file.is_file() else {}
    if saved.get("key") == key:
        print(f"reusing the lattice table {table_file}")
        D = torch.tensor(_from_json(saved["D"]), dtype=torch.float64)
        calls, wall = saved["model_calls"], saved["wall_time"]
        forwards = saved.get("sample_forwards", forwards_of(calls))  # tables before it kept calls only
    else:
        t0 = time.time()
        x0 = experiment.sample_x0(M, torch.Generator().manual_seed(s.seed))
        D, calls = lattice_table(model, x0, points, "count" if family == "kgillespie" else "tau", seed=s.seed + 1,
                                 objective=s.objective, coarse_state=s.coarse_state, weight=weight, rule=rule,
                                 prefix=prefix, batch_size=s.batch_size, progress=s.progress,
                                 base_points=lattice_size(settings.lattice, steps), max_span=span)
        wall = time.time() - t0
        forwards = forwards_of(calls)
        if dist.is_main():
            atomic_write_json(table_file, {"key": key, "D": _to_json(D.tolist()),
                                           "model_calls": calls, "sample_forwards": forwards, "wall_time": wall})
        dist.barrier()
    path_idx, J = best_grid(D, steps)
    path_idx = path_idx[:nfe + 1]  # under 'denoise' ε is the noise removal's, not the grid's
    chosen = [points[i] for i in path_idx]
    stages = {"thetas": grid_thetas(points, path_idx)} if rule == "trapezoidal" else {}
    if settings.refine != "none":
        chosen, stages = _refine(experiment, model, settings, s, sampler, family, points, chosen, rule, key, table_file)
        at = [points.index(t) for t in chosen]  # the refined grid's points are the lattice's: J is its sum of D
        J = float(sum(D[i, j] for i, j in zip(at, at[1:])))
        J = J if math.isfinite(J) else None  # a step longer than the table's span (nfe > 8): no J on this table
    record = {"label": schedule_label(settings, rule), "times": None, "nfe": nfe, "sampler": sampler,
              "objective": s.objective, "search": "lattice", "weight": weight, "J": J,
              "process": experiment.config["process"], "experiment": experiment.name, "model": identity,
              "num_samples": M, "seed": s.seed, "lattice_points": len(points), "state_file": str(table_file),
              "model_calls": calls, "sample_forwards": forwards, "prefix": prefix, "format_version": FORMAT_VERSION,
              "wall_time": wall, **({"rule": rule} if rule != "none" else {}), **stages,
              **({"end": end, "final_step": settings.final_step} if family == "tau" else {})}
    return _write_schedule(out_dir, experiment, model, record, family, chosen)


# What a schedule file without the field was searched with: the grid at ε (before jys.end); no step rule (the
# writers leave out rule 'none', though the lattice searches of 5–6 Dec 2026 left out the sampler's own rule too).
FIELD_DEFAULTS = {"rule": "none", "end": "eps"}


def searched_as(settings: JYSSettings, model, sampler: str) -> dict:
    """How `optimize` searches the schedule labelled 'jys' under these settings today, as its file records it: the
    objective, the search, J's weight and one-step rule, the grid's end and FORMAT_VERSION, each 'auto' resolved by
    today's defaults. The label fixes objective, search, weight and order at 'auto', no refinement, the end not 'eps'
    and the rule not the θ-trapezoidal leaps' (schedule_label); the rest comes from the settings. A file whose values
    differ was searched under other settings or older defaults (check_searched_as)."""
    settings = dataclasses.replace(settings, search=dataclasses.replace(settings.search, objective="auto"),
                                   kind="auto", weight="auto", order="auto", refine="none",
                                   end="auto" if settings.end == "eps" else settings.end)
    if step_rule(settings, sampler, model.process.kernel) == "trapezoidal":
        settings = dataclasses.replace(settings, rule="auto")
    if sampler in COUNT_GRID and resolve_order("auto", sampler) != "random":
        return {"objective": f"order-{resolve_order('auto', sampler)}", "search": "lattice",
                "format_version": FORMAT_VERSION}
    kernel = model.process.kernel
    rule = step_rule(settings, sampler, kernel)
    end = grid_end(settings, sampler)
    return {"objective": objective_for("auto", kernel, rule), "search": "lattice",
            "weight": j_weight(settings, rule, model, end), "rule": rule,
            **({} if sampler in COUNT_GRID else {"end": end}), "format_version": FORMAT_VERSION}


def check_searched_as(schedule: dict, expected: dict, name: str) -> None:
    """Refuse a schedule file whose recorded settings are not `expected` (searched_as): `schedule=jys` means the
    schedule today's defaults search, and a file left by an older search would otherwise be sampled as if it were.
    A field the file lacks counts as FIELD_DEFAULTS, or is not compared; τ-leaping's two multi-jump rules share a
    schedule (as they share its file), and a search recorded as a dict of settings is the published hierarchy's."""
    def compared(fields: dict, k: str):
        v = fields.get(k, FIELD_DEFAULTS.get(k))
        return v.removesuffix("_last") if k == "rule" and isinstance(v, str) else v

    differ = [k for k in expected
              if (k in schedule or k in FIELD_DEFAULTS) and compared(schedule, k) != compared(expected, k)]
    if differ:
        was = ", ".join(f"{k}={'hierarchy' if isinstance(schedule.get(k), dict) else compared(schedule, k)}"
                        + ("" if k in schedule else " (not recorded)") for k in differ)
        now = ", ".join(f"{k}={expected[k]}" for k in differ)
        raise ValueError(f"{name} was searched with {was}, and this config searches {now}: it was made under older "
                         "defaults or other jys.*, multi_jump or final_step settings. Rerun `python -m jys` with this "
                         "run's overrides (it rewrites the file), or name the file (schedule=PATH) to sample it as it is")


def check_refine(settings: JYSSettings, sampler: str, family: str, kernel, rule: str) -> None:
    """jys.refine=onpolicy applies to the lattice search of a time-grid sampler with a one-step law under a
    uniform kernel, J unweighted (J on the sampler's states has no weights): refused otherwise, before any table."""
    law = spec(sampler).step_rule
    if resolve_search(settings.kind) != "lattice" or settings.order != "auto":
        raise ValueError(f"jys.refine=onpolicy refines the lattice search's grid; got jys.search={settings.kind}"
                         + (f", jys.order={settings.order}" if settings.order != "auto" else ""))
    if family != "tau" or kernel.mask is not None or kernel.ordinal or law not in ("euler", "tau_leaping", "tweedie") \
            or rule == "trapezoidal":
        raise ValueError("jys.refine=onpolicy is for euler, tau_leaping and tweedie under uniform kernels (under an "
                         "absorbing kernel J's states are the sampler's already; under an ordinal one its KL is infinite "
                         f"near t = 0, jys.onpolicy); got {sampler} under {type(kernel).__name__}")
    if settings.weight not in ("auto", "none"):  # auto is none under a refine (resolve_weight)
        raise ValueError(f"jys.refine=onpolicy reads J unweighted on the sampler's states; got jys.weight={settings.weight}")


def _refine(experiment: Experiment, model, settings: JYSSettings, s: SearchSettings, sampler: str, family: str,
            points: list, chosen: list, rule: str, table_key: dict, table_file: Path) -> tuple[list, dict]:
    """jys.refine=onpolicy: the lattice optimum, or where J read on the sampler's own states (jys.onpolicy.OnPolicyJ.
    refine) is lower by more than 2 paired standard errors uniform, cosine or a power grid (samplers.schedules.POWERS),
    snapped to the lattice, then moved point by point over the lattice where J_Q falls by as much; cached beside the
    table. Returns (grid, record entries)."""
    M = settings.refine_samples
    key, digest = cache_key("refine", {"table": table_key, "start": chosen, "starts": ["dp", "uniform", "cosine", *POWERS],
                                       "accept": {"z": 2.0, "window": 4, "sweeps": 4}, "version": 1,
                                       "refine": settings.refine,
                                       "refine_samples": M, "law": resolve_rule("sampler", sampler, model.process.kernel,
                                                                                settings.multi_jump)})
    path = table_file.with_name(f"refine-{digest}.json")
    saved = json.loads(path.read_text()) if path.is_file() else {}
    if saved.get("key") != key:
        t0 = time.time()
        prefix = experiment.sample_x0(M, torch.Generator().manual_seed(s.seed))[:, : experiment.prefix] \
            if experiment.prefix else None
        J = OnPolicyJ(model, points, M, experiment.length, rule, key["law"], seed=s.seed, batch_size=s.batch_size,
                      per_step=len(points), prefix=prefix)
        start = J.value(chosen)
        others = [uniform(len(chosen) - 1, s.eps), cosine(len(chosen) - 1, s.eps),
                  *(power(len(chosen) - 1, q, s.eps) for q in POWERS)]
        grid, end = J.refine([chosen, *(g.tolist() for g in others)], log=print if s.progress else None)
        saved = {"key": key, "times": grid, "J_onpolicy_start": start.value, "J_onpolicy": end.value,
                 "J_onpolicy_se": end.se, "model_calls": J.calls, "wall_time": time.time() - t0}
        if dist.is_main():
            atomic_write_json(path, saved)
        dist.barrier()
    return saved["times"], {"refine": settings.refine, "refine_file": str(path),
                            **{k: saved[k] for k in ("J_onpolicy_start", "J_onpolicy", "J_onpolicy_se")},
                            "refine_model_calls": saved["model_calls"], "refine_wall_time": saved["wall_time"]}


def _optimize_order(experiment: Experiment, model, settings: JYSSettings, s: SearchSettings, nfe: int, sampler: str,
                    out_dir: Path) -> Path:
    """A count-grid sampler with a fixed order of positions (jys.order, DUS's dilated order): the counts that minimize
    J of jys.order (the context each slot's token is drawn in, against revealing one token per call), exactly, by DP
    over every reachable count (jys.lattice does not apply: every count is a point). The table of D is cached and
    serves every NFE."""
    M, L = settings.lattice_samples, experiment.length
    order_name = resolve_order(settings.order, sampler)
    identity = identity_of(model)
    users = settings.positions is not None and order_name == "dus"  # DUS in the user's order (unmask.order)
    if settings.positions is not None and len(settings.positions) != L:
        raise ValueError(f"unmask.order has {len(settings.positions)} positions; the experiment's length is {L}")
    mine = {"order_sha256": order_digest(torch.tensor(settings.positions))} if users else {}
    if settings.states == "model":
        if order_name == "shuffle":
            raise ValueError("jys.states=model with jys.order=shuffle: k-Gillespie's own draws reveal in orders J does "
                             "not read them in; use jys.states=data")
        if first_count(model.process, L) > 1:
            raise ValueError(f"jys.states=model draws the refined path one token per call, but no t < 1 reaches counts "
                             f"1 … {first_count(model.process, L) - 1} of L={L}; use jys.states=data")
        mine.update(states="model", draw_batch=s.batch_size)  # the draw's random stream runs batch by batch
    key, digest = cache_key("order", {
        "search": "order", "order": order_name, "model": identity, "experiment": experiment.config, "seed": s.seed,
        "lattice_samples": M, "data": experiment.identity(), "rounding": ROUNDING, **mine})
    table_file = out_dir / "schedules" / "search" / f"order-{order_name}-{digest}.json"
    forwards = L * M * (2 if settings.states == "model" else 1)  # sequence reads: the table's, and the draw's
    saved = json.loads(table_file.read_text()) if table_file.is_file() else {}
    if saved.get("key") == key:
        print(f"reusing the order table {table_file}")
        D, counts = torch.tensor(_from_json(saved["D"]), dtype=torch.float64), saved["counts"]
        calls, wall = saved["model_calls"], saved["wall_time"]
    else:
        t0 = time.time()
        g = torch.Generator().manual_seed(s.seed)
        if settings.states == "model":  # the refined path's own law: the sampler revealing one token per call
            drawn = refined_draw(model, sampler, M, L, g, s.batch_size, s.progress,
                                 order=torch.tensor(settings.positions) if users else None)
            x0, draw_calls = drawn.samples, int(sum(drawn.calls_per_batch))
        else:
            x0, draw_calls = experiment.sample_x0(M, g), 0
        # shuffle: one permutation per sequence, drawn after the sequences
        order = torch.tensor(settings.positions) if users else sampler_order(order_name, L, M, g)
        D, counts, calls = order_table(model, x0, order, s.batch_size, s.max_bytes, s.progress)
        calls += draw_calls
        wall = time.time() - t0
        if dist.is_main():
            atomic_write_json(table_file, {"key": key, "D": _to_json(D.tolist()), "counts": counts,
                                           "model_calls": calls, "sample_forwards": forwards, "wall_time": wall})
        dist.barrier()
    path_idx, J = optimal_grids(D, nfe)[nfe]
    record = {"label": settings.label, "times": None, "nfe": nfe, "sampler": sampler,
              "objective": f"order-{order_name}",
              **({"states": "model", "draw_batch": s.batch_size} if settings.states == "model" else {}),
              "search": "lattice", "order": order_name, "J": J, "process": experiment.config["process"],
              "experiment": experiment.name, "model": identity, "num_samples": M, "seed": s.seed,
              "lattice_points": len(counts), "state_file": str(table_file), "model_calls": calls,
              "sample_forwards": forwards, "prefix": 0, "format_version": FORMAT_VERSION, "wall_time": wall}
    if order_name == "dus":  # the order J was computed for: a DUS run in another order refuses this schedule
        record["order_sha256"] = order_digest(torch.tensor(settings.positions) if users else dilated_order(L))
    return _write_schedule(out_dir, experiment, model, record, "kgillespie", [counts[i] for i in path_idx])


def _optimize_beta(experiment: Experiment, model, settings: JYSSettings, nfe: int, sampler: str, family: str,
                   out_dir: Path) -> Path:
    """jys.search=beta (label 'beta', `schedule=beta`): the energy-minimizing mask schedule of arXiv 2509.13866,
    α(τ) = sin²(π/2 · I_τ(a, b)) at N steps uniform in τ (samplers.schedules.beta), with (a, b) chosen by the paper's
    2-D grid search over {0.1, …, 1.0}², scored here by J on the same lattice settings as jys.search=lattice (the
    paper scores each pair by the task's metric on 50–150 instances): the cheapest competitor of the golden-section
    search. Pairs whose grid repeats a time (or, for count-grid samplers, a count) at this N are skipped. The scores of
    every pair are cached under schedules/search/ and kept in the schedule file."""
    if model.process.kernel.mask is None:
        raise ValueError("jys.search=beta is a mask schedule: it needs an absorbing kernel")
    s = settings.search
    rule = step_rule(settings, sampler, model.process.kernel)
    objective = objective_for(s.objective, model.process.kernel, rule)
    key, digest = cache_key("beta", {
        "family": family, "sampler": sampler, "nfe": nfe, "model": identity_of(model), "experiment": experiment.config,
        "objective": objective, "coarse_state": s.coarse_state, "seed": s.seed,
        "weight": j_weight(settings, rule, model, "eps"), "rule": rule, "lattice": settings.lattice,
        "base_points": lattice_size(settings.lattice, nfe),  # the lattice the pairs are scored on (points per step)
        "lattice_samples": settings.lattice_samples, "values": BETA_VALUES, "eps": s.eps, "data": experiment.identity()})
    state_file = out_dir / "schedules" / "search" / f"beta-{digest}.json"
    saved = json.loads(state_file.read_text()) if state_file.is_file() else {}
    t0 = time.time()
    if saved.get("key") == key:
        print(f"reusing the Beta schedule scores {state_file}")
        scores, calls = saved["scores"], saved["model_calls"]
    else:
        reads: dict = {}  # the base lattice is read once for all pairs (common random numbers)
        base = set(lattice_points(settings.lattice, experiment.length, model.process,
                                  "kgillespie" if family == "kgillespie" else "tau", s.eps, nfe))
        scores, calls = [], 0
        for a in BETA_VALUES:
            for b in BETA_VALUES:
                try:
                    grid = beta(nfe, a, b, model.process, s.eps)
                    if family == "kgillespie":
                        token_counts(grid, model.process, experiment.length)
                except ValueError:
                    continue
                # the Beta grids end at ε and are scored among themselves on the nfe-step lattice they always had
                rec = grid_objective(experiment, model, dataclasses.replace(settings, end="eps"), sampler, grid, nfe,
                                     reads)
                scores.append({"a": a, "b": b, "J": rec["J"], "J_se": rec["J_se"], "times": rec["times"],
                               **({"counts": rec["counts"]} if "counts" in rec else {})})
                calls += rec["model_calls"]
                for point, context in [k for k in reads if k[0] not in base]:  # a pair's own points serve no other pair
                    del reads[(point, context)]
        if not scores:
            raise ValueError(f"no Beta(a, b) with a, b in {BETA_VALUES} gives a valid grid of {nfe} steps")
        if dist.is_main():
            atomic_write_json(state_file, {"key": key, "scores": scores, "model_calls": calls,
                                           "wall_time": time.time() - t0})
    best = min(scores, key=lambda c: c["J"])
    record = {"label": schedule_label(settings, rule), "times": None, "nfe": nfe, "sampler": sampler, "search": "beta",
              "a": best["a"], "b": best["b"], "J": best["J"], "J_se": best["J_se"], "objective": objective,
              "weight": j_weight(settings, rule, model, "eps"), "process": experiment.config["process"],
              "experiment": experiment.name, "model": identity_of(model), "num_samples": settings.lattice_samples,
              "seed": s.seed, "state_file": str(state_file), "model_calls": calls, "pairs_scored": len(scores),
              "format_version": FORMAT_VERSION, "wall_time": saved.get("wall_time", time.time() - t0)}
    return _write_schedule(out_dir, experiment, model, record, family,
                           best["counts"] if family == "kgillespie" else best["times"])


def _levels_used(state: SearchState, start, nfe: int) -> int:
    for used in range(len(state.levels) + 1):
        try:
            SearchState(state.levels[:used]).grid(start, nfe)
            return used
        except ValueError:
            continue
    return len(state.levels)


def grid_objective(experiment: Experiment, model, settings: JYSSettings, sampler: str, grid: torch.Tensor,
                   nfe: int, reads: dict | None = None, thetas: list[float] | None = None) -> dict:
    """J of one grid for `sampler` (its lattice: the one jys.search=lattice uses for this NFE, with the grid's own
    points added), with its standard error and per-interval terms; the record `python -m jys evaluate` writes.
    reads: model reads by point, shared by grids scored on the same settings (their base paths agree).
    thetas: the θ-trapezoidal steps' θ (J of its two leaps, jys.rule=sampler; default ½), whose stage times join
    the lattice."""
    check_sampler(sampler, model.process)
    rule = step_rule(settings, sampler, model.process.kernel)
    end = grid_end(settings, sampler)
    weight = j_weight(settings, rule, model, end)
    s = dataclasses.replace(settings.search, objective=objective_for(settings.search.objective, model.process.kernel,
                                                                      rule))
    length, prefix = experiment.length, experiment.prefix
    x0 = experiment.sample_x0(settings.lattice_samples, torch.Generator().manual_seed(s.seed))
    if sampler in COUNT_GRID:
        if prefix:
            check_prefix_support(sampler)
        counts = token_counts(grid, model.process, length)
        points = sorted(set(counts) | set(lattice_points(settings.lattice, length, model.process, "kgillespie", s.eps,
                                                         nfe)))
        lat = PathLattice(model, x0, points, "count", s.seed + 1, s.objective, s.coarse_state, weight,
                          batch_size=s.batch_size, progress=s.progress, read_cache=reads)
        value = lat.grid_value(counts, release=True)
        scored = {"counts": counts}
    else:
        times = charged_times([round(float(t), 12) for t in grid], round(s.eps, 12), end)
        stages = None
        if thetas is not None and rule != "trapezoidal":
            raise ValueError(f"this schedule gives each θ-trapezoidal step's θ, which J of its two leaps reads "
                             f"(jys.rule=sampler); J with rule {rule!r} would ignore them")
        if rule == "trapezoidal":
            thetas = [0.5] * (len(times) - 1) if thetas is None else list(thetas)
            if len(thetas) != len(times) - 1:
                raise ValueError(f"{len(thetas)} thetas for a grid of {len(times) - 1} steps")
            stages = [round(a - th * (a - b), 12) for a, b, th in zip(times, times[1:], thetas)]
        # the lattice jys.search=lattice uses for this budget: under 'denoise' its DP's nfe + 1 steps, for every grid
        # of the budget alike (a fixed grid at ε too), so that grids of one budget are read on one lattice
        steps = max(len(times) - 1, dp_steps(nfe, end))
        n = lattice_size(settings.lattice, steps)  # the lattice jys.search=lattice uses for this many steps
        points = sorted(set(lattice_points(settings.lattice, length, model.process, "tau", times[-1], steps)) | set(times)
                        | set(stages or []), reverse=True)
        lat = PathLattice(model, x0, points, "tau", s.seed + 1, s.objective, s.coarse_state, weight,
                          prefix=prefix, batch_size=s.batch_size, progress=s.progress, base_points=n, rule=rule,
                          read_cache=reads)
        value = lat.grid_value(times, stages, release=True)
        scored = {"thetas": thetas} if stages is not None else {}
        scored["end"] = end
    return {"times": grid.tolist(), **scored, "nfe": nfe, "sampler": sampler, "experiment": experiment.name,
            "model": identity_of(model), "objective": s.objective, "coarse_state": s.coarse_state, "rule": rule,
            "weight": weight, "lattice": settings.lattice, "lattice_samples": settings.lattice_samples,
            "seed": s.seed, "prefix": prefix, "J": value.value, "J_se": value.se, "interval_terms": value.terms,
            "lattice_points": len(points), "model_calls": lat.calls, "format_version": FORMAT_VERSION}
