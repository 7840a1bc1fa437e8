"""From a config to the grid objective J of its schedule (`python -m jys evaluate ... schedule=<any>`).

J = Σ_i D(t_i, t_{i+1}) (jys.lattice): the estimated divergence of the whole grid from the continuous-time
process, with its standard error over the lattice's sequences. Grids scored with the same settings meet the
same x_0 and the same forward path on the base lattice (common random numbers), so their J compare closely.
The record lands beside the schedules: runs/<exp>/<model>/schedules/evaluations/<sampler>-<label>-nfe<N>.json.
"""
from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig

from common import dist
from common.io import atomic_write_json
from jys.klub import resolve_objective
from jys.lattice import PathLattice
from pipeline.build import build_model, condition_prefix
from pipeline.runs import FORMAT_VERSION, artifact_path, resolve_schedule
from pipeline.search import checked_data_fn, lattice_points, settings_from, step_rule
from samplers.registry import COUNT_GRID, check_sampler
from samplers.schedules import token_counts


def lattice_settings(cfg: DictConfig) -> dict:
    j = cfg.jys
    out = {"weight": str(j.get("weight", "none")), "lattice": int(j.get("lattice", 32)),
           "lattice_samples": int(j.get("lattice_samples", 128))}
    if out["lattice"] < 2 or out["lattice_samples"] < 2:
        raise ValueError(f"jys.lattice and jys.lattice_samples must be >= 2, got {out['lattice']}, "
                         f"{out['lattice_samples']}")
    return out


def evaluate_schedule(cfg: DictConfig, model=None) -> Path:
    """Score `schedule=` (any: uniform, cosine, geometric, jys, a file) by J; write and return the record."""
    s = settings_from(cfg)
    ls = lattice_settings(cfg)
    model = model if model is not None else build_model(cfg)
    check_sampler(cfg.sampler, model.process)
    if cfg.sampler in ("first_hitting", "eb"):
        raise ValueError(f"{cfg.sampler} has no grid to evaluate")
    s.objective = resolve_objective(s.objective, model.process.kernel)
    label, grid, nfe, _ = resolve_schedule(cfg)
    length = int(cfg.experiment.length)
    prefix = condition_prefix(cfg)
    x0 = checked_data_fn(cfg, model.process)(ls["lattice_samples"], torch.Generator().manual_seed(s.seed))
    if cfg.sampler in COUNT_GRID:
        if prefix:
            raise ValueError(f"{cfg.sampler} counts all L tokens; a condition prefix is not supported there")
        counts = token_counts(grid, model.process, length)
        points = sorted(set(counts) | set(lattice_points(cfg, model.process, "kgillespie", s.eps, nfe)))
        lat = PathLattice(model, x0, points, "count", s.seed + 1, s.objective, s.coarse_state, ls["weight"],
                          batch_size=s.batch_size, progress=s.progress)
        value = lat.grid_value(counts)
        scored = {"counts": counts}
    else:
        times = [round(float(t), 12) for t in grid]
        n = max(ls["lattice"], 2 * nfe)  # the lattice jys.search=lattice uses for this NFE
        points = sorted(set(lattice_points(cfg, model.process, "tau", times[-1], nfe)) | set(times), reverse=True)
        lat = PathLattice(model, x0, points, "tau", s.seed + 1, s.objective, s.coarse_state, ls["weight"],
                          prefix=prefix, batch_size=s.batch_size, progress=s.progress, base_points=n,
                          rule=step_rule(cfg, model.process.kernel))
        value = lat.grid_value(times)
        scored = {}
    identity = model.identity() if hasattr(model, "identity") else {"name": cfg.model.name}
    record = {"label": label, "times": grid.tolist(), **scored, "nfe": nfe, "sampler": cfg.sampler,
              "experiment": cfg.experiment.name, "model": identity, "objective": s.objective,
              "coarse_state": s.coarse_state, "rule": step_rule(cfg, model.process.kernel), **ls, "seed": s.seed, "prefix": prefix,
              "J": value.value, "J_se": value.se, "interval_terms": value.terms, "lattice_points": len(points),
              "model_calls": lat.calls, "format_version": FORMAT_VERSION}
    path = artifact_path(cfg, "schedules/evaluations", label, nfe, "json")
    if dist.is_main():
        atomic_write_json(path, record)
    return path
