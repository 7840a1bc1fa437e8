"""From a config to the grid objective J of its schedule (`python -m jys evaluate ... schedule=<any>`).

J = Σ_i D(t_i, t_{i+1}) (jys.lattice): the estimated divergence of the whole grid from the continuous-time
process, with its standard error over the lattice's sequences. Grids scored with the same settings meet the
same x_0 and the same forward path on the base lattice (common random numbers), so their J compare closely.
The record lands beside the schedules: runs/<exp>/<model>/schedules/evaluations/<sampler>-<label>-nfe<N>.json.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from omegaconf import DictConfig

from common import dist
from common.io import atomic_write_json
from jys.klub import resolve_objective
from jys.lattice import PathLattice
from pipeline.build import build_model
from pipeline.experiment import Experiment, experiment_of
from pipeline.runs import FORMAT_VERSION, artifact_path, resolve_schedule
from pipeline.search import JYSSettings, identity_of, lattice_points, settings_from, step_rule
from samplers.registry import COUNT_GRID, check_prefix_support, check_sampler
from samplers.schedules import token_counts


def evaluate_schedule(cfg: DictConfig, model=None) -> Path:
    """Score `schedule=` (any: uniform, cosine, geometric, jys, a file) by J; write and return the record."""
    experiment = experiment_of(cfg)
    settings = settings_from(cfg)
    model = model if model is not None else build_model(cfg, experiment)
    if cfg.sampler in ("first_hitting", "eb"):
        raise ValueError(f"{cfg.sampler} has no grid to evaluate")
    label, grid, nfe, _ = resolve_schedule(cfg)
    record = {"label": label, **grid_objective(experiment, model, settings, str(cfg.sampler), grid, nfe)}
    path = artifact_path(cfg, "schedules/evaluations", label, nfe, "json")
    if dist.is_main():
        atomic_write_json(path, record)
    return path


def grid_objective(experiment: Experiment, model, settings: JYSSettings, sampler: str, grid: torch.Tensor,
                   nfe: int) -> dict:
    """J of one grid for `sampler` (its lattice: the one jys.search=lattice uses for this NFE, with the grid's own
    points added), with its standard error and per-interval terms; the record `python -m jys evaluate` writes."""
    check_sampler(sampler, model.process)
    s = dataclasses.replace(settings.search, objective=resolve_objective(settings.search.objective, model.process.kernel))
    length, prefix = experiment.length, experiment.prefix
    x0 = experiment.sample_x0(settings.lattice_samples, torch.Generator().manual_seed(s.seed))
    rule = step_rule(settings, sampler, model.process.kernel)
    if sampler in COUNT_GRID:
        if prefix:
            check_prefix_support(sampler)
        counts = token_counts(grid, model.process, length)
        points = sorted(set(counts) | set(lattice_points(settings.lattice, length, model.process, "kgillespie", s.eps,
                                                         nfe)))
        lat = PathLattice(model, x0, points, "count", s.seed + 1, s.objective, s.coarse_state, settings.weight,
                          batch_size=s.batch_size, progress=s.progress)
        value = lat.grid_value(counts)
        scored = {"counts": counts}
    else:
        times = [round(float(t), 12) for t in grid]
        n = max(settings.lattice, 2 * nfe)  # the lattice jys.search=lattice uses for this NFE
        points = sorted(set(lattice_points(settings.lattice, length, model.process, "tau", times[-1], nfe)) | set(times),
                        reverse=True)
        lat = PathLattice(model, x0, points, "tau", s.seed + 1, s.objective, s.coarse_state, settings.weight,
                          prefix=prefix, batch_size=s.batch_size, progress=s.progress, base_points=n, rule=rule)
        value = lat.grid_value(times)
        scored = {}
    return {"times": grid.tolist(), **scored, "nfe": nfe, "sampler": sampler, "experiment": experiment.name,
            "model": identity_of(model), "objective": s.objective, "coarse_state": s.coarse_state, "rule": rule,
            "weight": settings.weight, "lattice": settings.lattice, "lattice_samples": settings.lattice_samples,
            "seed": s.seed, "prefix": prefix, "J": value.value, "J_se": value.se, "interval_terms": value.terms,
            "lattice_points": len(points), "model_calls": lat.calls, "format_version": FORMAT_VERSION}
