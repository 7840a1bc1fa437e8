"""python -m metrics experiment=count model=oracle sampler=euler schedule=uniform nfe=16"""
import json

import hydra
import numpy as np
import torch
from omegaconf import DictConfig

from metrics.sequences import chain_invalid_rate, chain_nll, countdown_error, countdown_error_published
from pipeline.build import build_chain
from pipeline.io import atomic_write_json
from pipeline.runs import artifact_path, resolve_schedule


def evaluate(cfg: DictConfig, samples: torch.Tensor) -> dict:
    chain = build_chain(cfg)
    if samples.numel() and int(samples.max()) >= chain.num_states:
        raise ValueError(f"samples hold token {int(samples.max())} but the chain has {chain.num_states} states "
                         "(a MASK left by final_step=none?)")
    out = {"chain_invalid_rate": chain_invalid_rate(samples, chain),
           "chain_nll": chain_nll(samples, chain, float(cfg.oracle.floor))}
    if cfg.experiment.chain == "countdown":
        out["countdown_error"] = countdown_error(samples)
        out["countdown_error_published"] = countdown_error_published(samples)
    return out


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
