"""python -m metrics experiment=count model=oracle sampler=euler schedule=uniform nfe=16"""
import hashlib
import json

import hydra
import numpy as np
import torch
from omegaconf import DictConfig

from common.io import atomic_write_json
from pipeline.build import build_model
from pipeline.metrics import evaluate
from pipeline.runs import (
    FORMAT_VERSION,
    artifact_path,
    confidence,
    dus_order,
    key_differences,
    multi_jump,
    resolve_schedule,
    samples_key,
)
from samplers.loop import calls_per_sequence
from samplers.unmasking import order_digest

__all__ = ["evaluate", "grid_digest", "main", "samples_provenance"]


def samples_provenance(cfg: DictConfig, path, grid: torch.Tensor, schedule: dict | None = None) -> dict:
    """The samples file's model identity, data identity and key hash, with its stored key checked against the key
    `python -m samplers` would write for this config now (less num_samples and batch_size, which the scripts give
    the sampling stage only): samples of other settings, other weights, another chain or an older FORMAT_VERSION
    are refused, naming what differs."""
    with np.load(path) as f:
        if "model_identity" not in f.files or int(f.get("format_version", -1)) != FORMAT_VERSION:
            raise ValueError(f"samples at {path} predate format version {FORMAT_VERSION} (no model identity); "
                             "remake them with `python -m samplers` and the same overrides")
        stored = json.loads(str(f["config"]))
        key_sha = hashlib.sha256(str(f["config"]).encode()).hexdigest()[:16]
    now = samples_key(cfg, grid, build_model(cfg), schedule)
    # The file's size settings need not be restated: the record counts the samples the file holds.
    sized = ("num_samples", "batch_size")
    stored_what, now_what = ({k: v for k, v in d.items() if k not in sized} for d in (stored, now))
    if stored_what != now_what:
        raise ValueError(f"samples at {path} were made with other settings than this config's: "
                         + "; ".join(key_differences(stored_what, now_what))
                         + ". Remake them with `python -m samplers` and the same overrides")
    return {"model_identity": now["model_identity"], "data_identity": now["data_identity"],
            "format_version": FORMAT_VERSION, "samples_key_sha256": key_sha}


def grid_digest(grid: torch.Tensor) -> str:
    """The grid's times as a short hash: the seeds of one table cell must share it (results.tables.check_grids)."""
    return hashlib.sha256(grid.to(torch.float64).numpy().tobytes()).hexdigest()[:16]


@hydra.main(config_path="../configs", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    label, grid, nfe, schedule = resolve_schedule(cfg)
    path = artifact_path(cfg, "samples", label, nfe, "npz")
    if not path.is_file():
        raise FileNotFoundError(f"no samples at {path}; make them with `python -m samplers` and the same overrides")
    provenance = samples_provenance(cfg, path, grid, schedule)
    with np.load(path) as f:
        samples = torch.from_numpy(f["samples"].astype(np.int64))
        seed, calls = int(f["seed"]), float(f["model_calls"])
    # EB-Sampler has no grid: its NFE is the model calls its sequences took, on average
    nfe_calls = calls if nfe is None else calls_per_sequence(cfg.sampler, nfe, cfg.final_step)
    record = {"experiment": cfg.experiment.name, "model": cfg.model.name, "sampler": cfg.sampler,
              "schedule": label, "nfe": nfe, "nfe_calls": nfe_calls, "grid_sha256": grid_digest(grid),
              "model_calls": calls, "num_samples": int(samples.shape[0]),
              "seed": seed, "metrics": evaluate(cfg, samples), **provenance, "samples_file": str(path)}
    if multi_jump(cfg) is not None:
        record["multi_jump"] = multi_jump(cfg)
    if confidence(cfg) is not None:
        record["confidence"] = confidence(cfg)
    if cfg.sampler == "eb":
        record["gamma"] = float(cfg.unmask.gamma)
    order = dus_order(cfg)
    if order is not None:
        record["order_sha256"] = order_digest(order)
    atomic_write_json(artifact_path(cfg, "metrics", label, nfe, "json"), record)
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
