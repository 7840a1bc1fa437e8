"""The music experiment's data-only reference: the note-histogram Hellinger distance between each
held-out tune's continuation (after the condition prefix) and that of another held-out tune drawn at
random (metrics/music.py), written to runs/<experiment>/floor.json. Two different tunes are this far
apart; a model's continuations should be closer to their own tune's.
    python scripts/music_floor.py experiment=folk model=folk-tauldr [num_samples=N]"""
from pathlib import Path

import hydra
import torch
from omegaconf import DictConfig

from common.io import atomic_write_json
from metrics.music import mean_and_se, other_tune_hellinger
from pipeline.experiment import experiment_of

ROOT = Path(__file__).resolve().parents[1]


@hydra.main(config_path="../configs", config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    experiment = experiment_of(cfg)
    tunes = experiment.load(experiment.condition_split)[: int(cfg.num_samples)]
    h = other_tune_hellinger(tunes, experiment.prefix, experiment.vocab, torch.Generator().manual_seed(int(cfg.seed)))
    mean, se = mean_and_se(h)
    record = {"experiment": cfg.experiment.name, "model": None, "sampler": None, "schedule": "other_tune", "nfe": None,
              "num_samples": len(tunes), "seed": int(cfg.seed),
              "metrics": {"hellinger_true": mean, "hellinger_true_se": se}, "data_identity": experiment.identity()}
    path = Path(cfg.runs_dir) / cfg.experiment.name / "floor.json"
    atomic_write_json(path, record)
    print(f"another held-out tune's continuation against each tune's: H = {mean:.4f} ± {se:.4f} ({len(tunes)} tunes) "
          f"-> {path}")


if __name__ == "__main__":
    main()
