"""python -m train experiment=count [train.steps=... train.batch_size=...]: trains the network of
the experiment on its dataset, resuming from runs/train/<name>/checkpoint.pt, exporting EMA weights
to weights/<name>/. Several processes: torchrun --nproc_per_node=P -m train ... (DistributedDataParallel)."""
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from common import dist
from pipeline.build import setup_torch
from pipeline.experiment import experiment_of
from train.loop import train


@hydra.main(config_path="../configs", config_name="config", version_base=None)
@dist.exit_on_error
def main(cfg: DictConfig) -> None:
    dist.init()
    setup_torch(cfg)
    tc = cfg.train
    if tc.get("name") is None:
        raise ValueError(f"experiment {cfg.experiment.name!r} has no training preset (configs/training/<name>.yaml "
                         f"in its defaults list); the experiments that train are count, text, digits and folk")
    experiment = experiment_of(cfg)
    data = experiment.load("train")
    process = experiment.process
    spec = OmegaConf.to_container(cfg.experiment.process, resolve=True)
    spec["kernel"]["num_states"] = process.data_states
    settings = {k: tc[k] for k in ("steps", "batch_size", "lr", "weight_decay", "warmup", "grad_clip", "ema",
                                   "t_min", "seed", "bf16", "log_every", "ckpt_every")}
    settings.update({k: tc.get(k) for k in ("valid_every", "valid_size", "max_minutes", "objective", "nll_weight", "init_from")})
    settings["prefix"] = experiment.prefix  # conditional experiments never noise their first tokens
    valid = experiment.load("valid") if tc.get("valid_every") else None
    note = train(data, process, spec, OmegaConf.to_container(tc.arch), settings, Path(tc.out_dir),
                 Path(cfg.runs_dir) / "train" / tc.name, cfg.experiment.name, progress=cfg.progress,
                 device=dist.resolve_device(cfg.get("device", "auto")), valid=valid)
    if not dist.is_main():
        return
    print(f"trained {note['steps']} steps, {note['samples_seen']:,} sequences, {note['wall_time_s']} s, "
          f"final loss {note['final_loss_per_token']} -> {tc.out_dir}")


if __name__ == "__main__":
    try:
        main()
    finally:
        dist.finish()
