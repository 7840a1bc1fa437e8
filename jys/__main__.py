"""python -m jys experiment=count model=oracle sampler=euler nfe=16 [jys.objective=reference jys.num_samples=256 ...]

Several processes: torchrun --nproc_per_node=P -m jys ... (the same schedule; rank 0 writes it)."""
import json

import hydra
from omegaconf import DictConfig

from jys.run import optimize
from pipeline import dist
from pipeline.build import setup_torch


@hydra.main(config_path="../configs", config_name="config", version_base=None)
@dist.exit_on_error
def main(cfg: DictConfig) -> None:
    dist.init()
    setup_torch(cfg)
    path = optimize(cfg)
    if not dist.is_main():
        return
    record = json.loads(path.read_text())
    times = ", ".join(f"{t:.4f}" for t in record["times"])
    print(f"{record['label']} schedule, {record['nfe']} steps, {record['sample_forwards']:,} sample-forwards in "
          f"{record['model_calls']} model calls: [{times}] -> {path}")


if __name__ == "__main__":
    try:
        main()
    finally:
        dist.finish()
