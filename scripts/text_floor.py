"""The judge's floor: the text metrics of held-out text (windows of the valid split, as long as a sample).

    python scripts/text_floor.py experiment=text model=text-sedd num_samples=64 seed=0
Writes runs/<experiment>/floor.json, a record with the keys of the metrics records (schedule 'heldout').
Windows start at random multiples of the length, so no two overlap; when the held-out plays hold fewer
disjoint windows than asked for (GPT-2 tokens at L = 1024), all of them are scored, and the record says how many.
"""
import json
from pathlib import Path

import hydra
from omegaconf import DictConfig

from common.io import atomic_write_json
from pipeline.build import setup_torch
from pipeline.experiment import experiment_of
from pipeline.metrics import evaluate


@hydra.main(config_path="../configs", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    setup_torch(cfg)
    length, num = int(cfg.experiment.length), int(cfg.num_samples)
    heldout = experiment_of(cfg).heldout_windows(num, int(cfg.seed))
    if len(heldout) < num:
        print(f"the valid split holds {len(heldout)} disjoint windows of {length} tokens, fewer than the {num} asked "
              f"for: scoring all {len(heldout)}")
        num = len(heldout)
    record = {"experiment": cfg.experiment.name, "model": cfg.model.name, "sampler": None, "schedule": "heldout",
              "nfe": None, "num_samples": num, "seed": int(cfg.seed), "metrics": evaluate(cfg, heldout),
              "data_identity": experiment_of(cfg).identity()}
    path = Path(cfg.runs_dir) / cfg.experiment.name / "floor.json"
    atomic_write_json(path, record)
    print(json.dumps(record["metrics"]), "->", path)


if __name__ == "__main__":
    main()
