"""python -m samplers experiment=count model=oracle sampler=euler schedule=uniform nfe=16 num_samples=1024 seed=0"""
import json
import time

import hydra
import numpy as np
import torch
from omegaconf import DictConfig

from pipeline.build import build_model, condition_prefix, condition_prefixes, setup_torch
from pipeline.io import atomic_write_npz
from pipeline.runs import FORMAT_VERSION, artifact_path, resolve_schedule, samples_key
from samplers.loop import run_sampler


HASHES = ("weights_sha256", "chain_sha256")


def check_schedule_model(schedule: dict, identity: dict, label: str) -> None:
    """A JYS schedule file records the model it was searched for; one searched for other weights or
    another chain is refused rather than silently applied to this model."""
    made_for = schedule.get("model")
    if not isinstance(made_for, dict):
        return
    for h in HASHES:
        if h in made_for and h in identity and made_for[h] != identity[h]:
            raise ValueError(f"schedule {label!r} was searched for a model with {h} {made_for[h][:12]}..., but this "
                             f"model has {identity[h][:12]}...; rerun `python -m jys` with the same overrides")


@hydra.main(config_path="../configs", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    setup_torch(cfg)
    model = build_model(cfg)
    if hasattr(model, "describe"):
        print(model.describe())
    label, grid, nfe, schedule = resolve_schedule(cfg)
    key = samples_key(cfg, grid, model)
    check_schedule_model(schedule, key["model_identity"], label)
    if schedule and int(schedule.get("prefix") or 0) != condition_prefix(cfg):
        raise ValueError(f"schedule {label!r} was searched with a condition prefix of {schedule.get('prefix') or 0} "
                         f"tokens, but experiment.condition.prefix is {condition_prefix(cfg)}; rerun `python -m jys`")
    path = artifact_path(cfg, "samples", label, nfe, "npz")
    if path.is_file() and not cfg.overwrite:
        with np.load(path) as f:
            stored = json.loads(str(f["config"]))
        if stored == key:
            print(f"{cfg.sampler} / {label}: {path} already holds these samples (overwrite=true to redo)")
            return
        changed = sorted(k for k in set(stored) | set(key) if stored.get(k) != key.get(k))
        print(f"{cfg.sampler} / {label}: {path} holds other samples (differing in {changed}); redoing them")
    generator = torch.Generator().manual_seed(int(cfg.seed))
    prefix = condition_prefixes(cfg, int(cfg.num_samples))  # None unless experiment.condition.prefix > 0
    start = time.time()
    result = run_sampler(model, cfg.sampler, grid, int(cfg.num_samples), int(cfg.experiment.length), generator,
                         batch_size=int(cfg.batch_size), final_step=cfg.final_step, progress=cfg.progress,
                         prefix=prefix, multi_jump=str(cfg.multi_jump))
    wall = time.time() - start
    atomic_write_npz(path, samples=result.samples.numpy().astype("int32"), times=grid.numpy(), nfe=nfe,
                     model_calls=result.nfe, seed=int(cfg.seed), sampler=cfg.sampler, schedule=label,
                     wall_time=wall, config=json.dumps(key), model_identity=json.dumps(key["model_identity"]),
                     data_identity=json.dumps(key["data_identity"]), format_version=FORMAT_VERSION,
                     prefix=condition_prefix(cfg))
    print(f"{cfg.sampler} / {label}: {result.samples.shape[0]} samples, grid of {nfe} steps, "
          f"{result.nfe:g} model calls (NFE spent), {wall:.1f} s -> {path}")


if __name__ == "__main__":
    main()
