"""python -m jys experiment=count model=oracle sampler=euler nfe=16 [jys.objective=reference jys.num_samples=256 ...]
python -m jys evaluate experiment=count model=oracle sampler=euler schedule=uniform nfe=16: the grid objective J of
any schedule (pipeline.evaluate), written beside the schedules.

Several processes: torchrun --nproc_per_node=P -m jys ... (the same schedule; rank 0 writes it)."""
import json
import sys

import hydra
from omegaconf import DictConfig

from common import dist
from pipeline.build import setup_torch
from pipeline.evaluate import evaluate_schedule
from pipeline.search import optimize_config


@hydra.main(config_path="../configs", config_name="config", version_base=None)
@dist.exit_on_error
def main(cfg: DictConfig) -> None:
    dist.init()
    setup_torch(cfg)
    if EVALUATE:
        path = evaluate_schedule(cfg)
        if dist.is_main():
            r = json.loads(path.read_text())
            print(f"{r['label']} grid, {r['nfe']} steps: J = {r['J']:.6g} ± {r['J_se']:.2g} (weight {r['weight']}, "
                  f"{r['lattice_samples']} sequences, {r['lattice_points']} lattice points) -> {path}")
        return
    path = optimize_config(cfg)
    if not dist.is_main():
        return
    record = json.loads(path.read_text())
    times = ", ".join(f"{t:.4f}" for t in record["times"])
    if "sample_forwards" in record:  # the hierarchy
        cost = f"{record['sample_forwards']:,} sample-forwards in {record['model_calls']} model calls"
    elif record.get("search") == "beta":
        cost = (f"Beta(a={record['a']:g}, b={record['b']:g}), J = {record['J']:.6g}, {record['pairs_scored']} pairs "
                f"scored in {record['model_calls']} model calls")
    else:
        cost = f"J = {record['J']:.6g} on a lattice of {record['lattice_points']} points, {record['model_calls']} model calls"
    if "refine" in record:
        cost += (f"; refined from J on the sampler's states {record['J_onpolicy_start']:.6g} to {record['J_onpolicy']:.6g} "
                 f"in {record['refine_model_calls']} model calls")
    print(f"{record['label']} schedule, {record['nfe']} steps, {cost}: [{times}] -> {path}")


EVALUATE = len(sys.argv) > 1 and sys.argv[1] == "evaluate"
if EVALUATE:
    del sys.argv[1]  # the rest are Hydra overrides

if __name__ == "__main__":
    try:
        main()
    finally:
        dist.finish()
