"""From a config to a schedule file: cached, resumable levels, then the grid for the asked NFE."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from common import dist
from common.io import atomic_write_json
from jys.klub import check_coarse_state, check_objective, resolve_objective
from jys.lattice import base_lattice, optimal_grids
from jys.schedule import lattice_span, lattice_table, resolve_rule
from jys.search import CountSearch, Level, SearchSettings, SearchState, TimeSearch, has_point
from models.process import mixing_time
from pipeline.build import build_model, condition_prefix, data_identity, sample_data
from pipeline.runs import FORMAT_VERSION, artifact_path, jys_label, run_dir
from samplers.registry import COUNT_GRID, check_sampler, spec
from samplers.schedules import check_grid, first_count, times_from_counts

SEARCHES = ("auto", "hierarchy", "lattice")  # auto | the published golden-section levels | J's exact optimum on a lattice


def resolve_search(search: str, kernel) -> str:
    """auto: 'lattice' for categorical kernels (absorbing, uniform), where J ranks grids as the samples do
    (docs/results/jys.md, "The grid objective J"); 'hierarchy' for ordinal kernels, whose J has no frozen-denoiser
    path or step term yet (no Tweedie step)."""
    if search not in SEARCHES:
        raise ValueError(f"unknown jys.search {search!r}; expected one of {SEARCHES}")
    if search == "auto":
        return "hierarchy" if kernel.ordinal else "lattice"
    return search


def settings_from(cfg: DictConfig) -> SearchSettings:
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
    return s


def resolve_t_mix(cfg: DictConfig, process, s: SearchSettings) -> float:
    """jys.t_mix if set (1.0: search all of [eps, 1]), else the process's mixing time for jys.mix_tv."""
    forced = cfg.jys.get("t_mix")
    if forced is not None:
        if not s.eps < float(forced) <= 1.0:
            raise ValueError(f"jys.t_mix must lie in (eps, 1], got {forced}")
        return float(forced)
    return mixing_time(process, s.mix_tv)


def checked_data_fn(cfg: DictConfig, process):
    """x_0 sampler for the KLUB; its output is checked against the model's vocabulary and length."""
    length, states = int(cfg.experiment.length), process.data_states

    def data_fn(n, generator):
        x0 = sample_data(cfg, n, generator)
        if x0.shape != (n, length):
            raise ValueError(f"data of shape {tuple(x0.shape)}, expected ({n}, {length}) (experiment.length)")
        if x0.min() < 0 or x0.max() >= states:
            raise ValueError(f"data tokens in [{int(x0.min())}, {int(x0.max())}], but the model has {states} data states")
        return x0

    return data_fn


def optimize(cfg: DictConfig, model=None) -> Path:
    """Write runs/<exp>/<model>/schedules/<sampler>-<jys label>-nfe<N>.json and return its path."""
    nfe = cfg.nfe
    if not isinstance(nfe, int) or nfe < 1:
        raise ValueError(f"nfe must be an integer >= 1, got {nfe!r}")
    s = settings_from(cfg)
    model = model if model is not None else build_model(cfg)
    check_sampler(cfg.sampler, model.process)
    if not spec(cfg.sampler).schedule:
        raise ValueError(f"{cfg.sampler} takes no schedule (first_hitting is exact, eb chooses its counts as it goes); "
                         f"JYS serves euler, tau_leaping, tweedie and the count-grid samplers {', '.join(COUNT_GRID)}")
    length = int(cfg.experiment.length)
    # Count-grid samplers share k-Gillespie's search over unmasked-token counts (the KLUB of uniformly chosen
    # positions; see docs/results/peers.md): one search state serves all three.
    family = "kgillespie" if cfg.sampler in COUNT_GRID else "tau"
    if family == "kgillespie" and nfe > length:
        raise ValueError(f"{cfg.sampler} unmasks at least one token per step: nfe={nfe} exceeds length {length}")
    prefix = condition_prefix(cfg)
    if family == "kgillespie" and prefix:
        raise ValueError("the count search counts all L tokens; conditional generation "
                         f"(experiment.condition.prefix={prefix}) is not supported there yet")
    label = jys_label(s.objective, str(cfg.jys.get("search", "auto")), str(cfg.jys.get("weight", "none")))
    search = resolve_search(str(cfg.jys.get("search", "auto")), model.process.kernel)
    s.objective = resolve_objective(s.objective, model.process.kernel)
    if search == "lattice":
        return _optimize_lattice(cfg, model, s, family, prefix, label)
    t_mix = 1.0 if family == "kgillespie" else resolve_t_mix(cfg, model.process, s)
    searcher = (CountSearch(model, checked_data_fn(cfg, model.process), s, length) if family == "kgillespie"
                else TimeSearch(model, checked_data_fn(cfg, model.process), s, length, t_mix, prefix))
    identity = model.identity() if hasattr(model, "identity") else {"name": cfg.model.name}
    speed_only = ("progress", "batch_size", "max_bytes")
    key = {"family": family, "model": identity,
           "experiment": {k: v for k, v in OmegaConf.to_container(cfg.experiment, resolve=True).items()
                          if k not in ("metrics", "models")},  # what is evaluated, and with which models, fixes no level
           "settings": {k: v for k, v in dataclasses.asdict(s).items() if k not in speed_only}, "t_mix": t_mix,
           "data": data_identity(cfg), "format_version": FORMAT_VERSION}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    state_file = run_dir(cfg) / "schedules" / "search" / f"{family}-{s.objective}-{digest}.json"
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
    record = {"label": label, "times": None, "nfe": nfe, "sampler": cfg.sampler,
              "objective": s.objective, "process": key["experiment"]["process"], "experiment": cfg.experiment.name,
              "model": identity, "num_samples": s.num_samples, "seed": s.seed,
              "search": key["settings"], "state_file": str(state_file),
              "klub_per_level": [lv.klub for lv in state.levels[:used]],
              "model_calls": sum(lv.model_calls for lv in state.levels[:used]),
              "sample_forwards": sum(lv.sample_forwards for lv in state.levels[:used]),
              "evaluations": sum(lv.evaluations for lv in state.levels[:used]), "t_mix": t_mix, "prefix": prefix,
              "format_version": FORMAT_VERSION,
              "wall_time": state.wall_time}
    return _write_schedule(cfg, model, record, family, points)


def _write_schedule(cfg: DictConfig, model, record: dict, family: str, points: list) -> Path:
    """Add the grid (times; for the count family its counts too) to the record and write the schedule file."""
    if family == "kgillespie":
        record["counts"] = [int(k) for k in points]
        points = times_from_counts(points, model.process, int(cfg.experiment.length)).tolist()
    record["times"] = check_grid(torch.tensor(points, dtype=torch.float64)).tolist()
    path = artifact_path(cfg, "schedules", record["label"], int(cfg.nfe), "json")
    if dist.is_main():
        atomic_write_json(path, record)
    dist.barrier()  # no rank reads a state file before rank 0 has written it
    return path


def lattice_points(cfg: DictConfig, process, family: str, eps: float, nfe: int) -> list[float]:
    """The lattice of the grid objective: times (base_lattice of n uniform points), or for the count family every
    count L/(2n) apart that some t < 1 reaches, with 0 and L; n = max(jys.lattice, 2·nfe), so that a grid of
    many steps still has lattice points to choose between."""
    n = int(cfg.jys.get("lattice", 32))
    if n < 2:
        raise ValueError(f"jys.lattice must be >= 2, got {n}")
    n = max(n, 2 * nfe)
    if family == "kgillespie":
        L = int(cfg.experiment.length)
        low = first_count(process, L)
        return sorted({0, L} | {k for k in range(0, L + 1, max(1, L // (2 * n))) if k >= low})
    return base_lattice(n, eps)


def step_rule(cfg: DictConfig, kernel) -> str:
    """jys.rule resolved for this config's sampler (jys.schedule.resolve_rule)."""
    return resolve_rule(str(cfg.jys.get("rule", "auto")), str(cfg.sampler), kernel, str(cfg.get("multi_jump", "reject")))


def _optimize_lattice(cfg: DictConfig, model, s: SearchSettings, family: str, prefix: int, label: str) -> Path:
    """jys.search=lattice: the grid of `nfe` steps that minimizes J (jys.lattice, weight jys.weight) exactly over
    the lattice's points, by dynamic programming. The table of D over all pairs of points is cached and serves
    every NFE."""
    nfe = int(cfg.nfe)
    M, weight = int(cfg.jys.get("lattice_samples", 128)), str(cfg.jys.get("weight", "none"))
    points = lattice_points(cfg, model.process, family, s.eps, nfe)
    span = lattice_span(nfe, int(cfg.jys.get("lattice", 32)), len(points))
    identity = model.identity() if hasattr(model, "identity") else {"name": cfg.model.name}
    key = {"search": "lattice", "family": family, "model": identity,
           "experiment": {k: v for k, v in OmegaConf.to_container(cfg.experiment, resolve=True).items()
                          if k not in ("metrics", "models")},
           "objective": s.objective, "coarse_state": s.coarse_state, "seed": s.seed, "weight": weight,
           **({"rule": step_rule(cfg, model.process.kernel)} if step_rule(cfg, model.process.kernel) != "none" else {}),
           "lattice_samples": M, "points": points, "data": data_identity(cfg), "format_version": FORMAT_VERSION,
           **({"max_span": span} if span else {})}
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    table_file = run_dir(cfg) / "schedules" / "search" / f"lattice-{family}-{s.objective}-{digest}.json"
    saved = json.loads(table_file.read_text()) if table_file.is_file() else {}
    if saved.get("key") == key:
        print(f"reusing the lattice table {table_file}")
        D = torch.tensor([[math.inf if v is None else v for v in row] for row in saved["D"]], dtype=torch.float64)
        calls, wall = saved["model_calls"], saved["wall_time"]
    else:
        t0 = time.time()
        x0 = checked_data_fn(cfg, model.process)(M, torch.Generator().manual_seed(s.seed))
        D, calls = lattice_table(model, x0, points, "count" if family == "kgillespie" else "tau", seed=s.seed + 1,
                                 objective=s.objective, coarse_state=s.coarse_state, weight=weight,
                                 rule=step_rule(cfg, model.process.kernel), prefix=prefix, batch_size=s.batch_size,
                                 progress=s.progress, base_points=max(int(cfg.jys.get("lattice", 32)), 2 * nfe),
                                 max_span=span)
        wall = time.time() - t0
        if dist.is_main():
            atomic_write_json(table_file, {"key": key, "D": [[v if math.isfinite(v) else None for v in row]
                                                             for row in D.tolist()],
                                           "model_calls": calls, "wall_time": wall})
        dist.barrier()
    path_idx, J = optimal_grids(D, nfe)[nfe]
    chosen = [points[i] for i in path_idx]
    record = {"label": label, "times": None, "nfe": nfe, "sampler": cfg.sampler,
              "objective": s.objective, "search": "lattice", "weight": weight, "J": J,
              "process": key["experiment"]["process"], "experiment": cfg.experiment.name, "model": identity,
              "num_samples": M, "seed": s.seed, "lattice_points": len(points), "state_file": str(table_file),
              "model_calls": calls, "prefix": prefix, "format_version": FORMAT_VERSION, "wall_time": wall}
    return _write_schedule(cfg, model, record, family, chosen)


def _levels_used(state: SearchState, start, nfe: int) -> int:
    for used in range(len(state.levels) + 1):
        try:
            SearchState(state.levels[:used]).grid(start, nfe)
            return used
        except ValueError:
            continue
    return len(state.levels)
