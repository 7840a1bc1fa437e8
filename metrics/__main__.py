"""python -m metrics experiment=count model=oracle sampler=euler schedule=uniform nfe=16"""
import json

import hydra
import numpy as np
import torch
from omegaconf import DictConfig

from metrics.registry import evaluate
from pipeline.io import atomic_write_json
from pipeline.runs import artifact_path, resolve_schedule

__all__ = ["evaluate", "main"]


@hydra.main(config_path="../configs", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    label, _, nfe, _ = resolve_schedule(cfg)
    path = artifact_path(cfg, "samples", label, nfe, "npz")
    if not path.is_file():
        raise FileNotFoundError(f"no samples at {path}; make them with `python -m samplers` and the same overrides")
    with np.load(path) as f:
        samples = torch.from_numpy(f["samples"].astype(np.int64))
        seed, calls = int(f["seed"]), float(f["model_calls"])
    record = {"experiment": cfg.experiment.name, "model": cfg.model.name, "sampler": cfg.sampler,
              "schedule": label, "nfe": nfe, "model_calls": calls, "num_samples": int(samples.shape[0]),
              "seed": seed, "metrics": evaluate(cfg, samples)}
    atomic_write_json(artifact_path(cfg, "metrics", label, nfe, "json"), record)
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
