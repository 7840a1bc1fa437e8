"""The digits-FID floor: the held-out split against the training split through the same extractor and
reference as the samples (metrics/fid.py), written to runs/<experiment>/floor.json.
    python scripts/image_floor.py experiment=digits model=digits-tauldr"""
from pathlib import Path

import hydra
from omegaconf import DictConfig

from common.io import atomic_write_json
from pipeline.experiment import experiment_of
from pipeline.metrics import MetricContext

ROOT = Path(__file__).resolve().parents[1]


@hydra.main(config_path="../configs", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    held_out = experiment_of(cfg).load("valid")
    ctx = MetricContext(cfg)
    metrics = {name: ctx.fid(held_out, {"digits_fid": "digits", "fid": "inception"}[name])
               for name in cfg.experiment.metrics if name in ("digits_fid", "fid")}
    record = {"experiment": cfg.experiment.name, "model": None, "sampler": None, "schedule": "heldout", "nfe": None,
              "num_samples": len(held_out), "seed": None, "metrics": metrics, "data_identity": experiment_of(cfg).identity()}
    path = Path(cfg.runs_dir) / cfg.experiment.name / "floor.json"
    atomic_write_json(path, record)
    print(f"held-out images against the training split: {metrics} ({len(held_out)} images) -> {path}")


if __name__ == "__main__":
    main()
