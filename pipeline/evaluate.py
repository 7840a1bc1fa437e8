"""From a config to the grid objective J of its schedule (`python -m jys evaluate ... schedule=<any>`).

J = Σ_i D(t_i, t_{i+1}) (jys.lattice): the estimated divergence of the whole grid from the continuous-time
process, with its standard error over the lattice's sequences. Grids scored with the same settings meet the
same x_0 and the same forward path on the base lattice (common random numbers), so their J compare closely.
The record lands beside the schedules: runs/<exp>/<model>/schedules/evaluations/<sampler>-<label>-nfe<N>.json.
"""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from common import dist
from common.io import atomic_write_json
from pipeline.build import build_model
from pipeline.experiment import experiment_of
from pipeline.runs import artifact_path, resolve_schedule, step_thetas
from pipeline.search import grid_objective, settings_from
from samplers.registry import spec as sampler_spec


def evaluate_schedule(cfg: DictConfig, model=None) -> Path:
    """Score `schedule=` (any: uniform, cosine, geometric, jys, a file) by J; write and return the record."""
    experiment = experiment_of(cfg)
    settings = settings_from(cfg)
    model = model if model is not None else build_model(cfg, experiment)
    if sampler_spec(cfg.sampler).grid == "none":
        raise ValueError(f"{cfg.sampler} has no grid to evaluate")
    label, grid, nfe, schedule = resolve_schedule(cfg)
    record = {"label": label, **grid_objective(experiment, model, settings, str(cfg.sampler), grid, nfe,
                                               thetas=step_thetas(cfg, schedule))}
    path = artifact_path(cfg, "schedules/evaluations", label, nfe, "json")
    if dist.is_main():
        atomic_write_json(path, record)
    return path
