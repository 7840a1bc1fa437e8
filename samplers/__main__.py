"""python -m samplers experiment=count model=oracle sampler=euler schedule=uniform nfe=16 num_samples=1024 seed=0"""
import json
import time

import hydra
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from pipeline.build import build_model, setup_torch
from pipeline.io import atomic_write_npz
from pipeline.runs import artifact_path, resolve_schedule
from samplers.loop import run_sampler


def _run_config(cfg: DictConfig, grid) -> dict:
    """What fixes the samples: the config less what only changes speed or display, plus the grid."""
    keep = OmegaConf.to_container(cfg, resolve=True)
    for k in ("progress", "threads", "device", "overwrite", "jys", "train"):
        keep.pop(k, None)
    keep["model"].pop("chunk", None)
    keep["grid"] = grid.tolist()
    return keep


@hydra.main(config_path="../configs", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    setup_torch(cfg)
    model = build_model(cfg)
    if hasattr(model, "describe"):
        print(model.describe())
    label, grid, nfe, _ = resolve_schedule(cfg)
    path = artifact_path(cfg, "samples", label, nfe, "npz")
    config = _run_config(cfg, grid)
    if path.is_file() and not cfg.overwrite:
        with np.load(path) as f:
            if json.loads(str(f["config"])) == config:
                print(f"{cfg.sampler} / {label}: {path} already holds these samples (overwrite=true to redo)")
                return
    generator = torch.Generator().manual_seed(int(cfg.seed))
    start = time.time()
    result = run_sampler(model, cfg.sampler, grid, int(cfg.num_samples), int(cfg.experiment.length), generator,
                         batch_size=int(cfg.batch_size), final_step=cfg.final_step, progress=cfg.progress)
    wall = time.time() - start
    atomic_write_npz(path, samples=result.samples.numpy().astype("int32"), times=grid.numpy(), nfe=nfe,
                     model_calls=result.nfe, seed=int(cfg.seed), sampler=cfg.sampler, schedule=label,
                     wall_time=wall, config=json.dumps(config))
    print(f"{cfg.sampler} / {label}: {result.samples.shape[0]} samples, grid of {nfe} steps, "
          f"{result.nfe:g} model calls (NFE spent), {wall:.1f} s -> {path}")


if __name__ == "__main__":
    main()
