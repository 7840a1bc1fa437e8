"""python -m jys experiment=count model=oracle sampler=euler nfe=16 [jys.objective=reference jys.num_samples=256 ...]"""
import json

import hydra
from omegaconf import DictConfig

from jys.run import optimize
from pipeline.build import setup_torch


@hydra.main(config_path="../configs", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    setup_torch(cfg)
    path = optimize(cfg)
    record = json.loads(path.read_text())
    times = ", ".join(f"{t:.4f}" for t in record["times"])
    print(f"{record['label']} schedule, {record['nfe']} steps, {record['sample_forwards']:,} sample-forwards in "
          f"{record['model_calls']} model calls: [{times}] -> {path}")


if __name__ == "__main__":
    main()
