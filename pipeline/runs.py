"""Where each stage's file lives, and how `schedule=` resolves to a time grid."""
from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig

from samplers.schedules import BASELINES, load_schedule


def run_dir(cfg: DictConfig) -> Path:
    return Path(cfg.runs_dir) / cfg.experiment.name / cfg.model.name


def artifact_path(cfg: DictConfig, stage: str, label: str, nfe: int, suffix: str) -> Path:
    """runs/<experiment>/<model>/<stage>/<sampler>-<label>-nfe<N>.<suffix>"""
    return run_dir(cfg) / stage / f"{cfg.sampler}-{label}-nfe{nfe}.{suffix}"


def jys_label(objective: str) -> str:
    """The label of a JYS schedule: 'jys' for the default objective, 'jys-<objective>' otherwise."""
    return "jys" if objective == "girsanov" else f"jys-{objective}"


def resolve_schedule(cfg: DictConfig) -> tuple[str, torch.Tensor, int, dict]:
    """`schedule=` → (label, grid, nfe, file contents or {}).

    'uniform' and 'cosine' are built for `nfe`; 'jys' (or 'jys-reference') reads the file that
    `python -m jys` wrote for this experiment, model, sampler and nfe; anything else is a path to a
    JSON schedule file, whose `times` fix the NFE.
    """
    spec = str(cfg.schedule)
    if spec in BASELINES:
        return spec, BASELINES[spec](int(cfg.nfe), float(cfg.eps)), int(cfg.nfe), {}
    if spec.startswith("jys") and not spec.endswith(".json"):
        path = artifact_path(cfg, "schedules", spec, int(cfg.nfe), "json")
        if not path.is_file():
            raise FileNotFoundError(f"no JYS schedule at {path}; make it first with "
                                    f"`python -m jys experiment={cfg.experiment.name} model={cfg.model.name} "
                                    f"sampler={cfg.sampler} nfe={cfg.nfe}`")
    else:
        path = Path(spec)
    data = load_schedule(path)
    grid = torch.tensor(data["times"], dtype=torch.float64)
    return data.get("label", path.stem), grid, len(grid) - 1, data
