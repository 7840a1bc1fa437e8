"""The oracle tables' metrics on the chain's own samples: their floor at the tables' sample size.

    python scripts/chain_floor.py EXPERIMENT [--num 128] [--draws 6] [Hydra overrides]

Draws `--draws` sets of `--num` sequences from the oracle's chain (the data chain mixed with oracle.floor, the law
its exact denoiser targets; seeds 1000, 1001, ...) and prints the mean of each set's chain NLL per token and bigram
TV (scripts/jys_grid_table.py's metrics) with the standard error of that mean over the sets: what a perfect sampler
scores at that sample size (bigram TV over S² bigrams is far from 0 at a few hundred sequences). No prefix.
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from metrics.sequences import bigram_tv, chain_nll
from pipeline.build import oracle_setup
from pipeline.experiment import experiment_of


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("experiment")
    p.add_argument("--num", type=int, default=128, help="sequences per set (the table's --num)")
    p.add_argument("--draws", type=int, default=6, help="sets drawn")
    a, overrides = p.parse_known_args()
    if a.num < 1 or a.draws < 2:
        p.error(f"--num {a.num} --draws {a.draws}: expected at least 1 sequence and 2 sets")
    _, cfg, model = oracle_setup(a.experiment, "euler", overrides)
    if experiment_of(cfg).prefix:  # experiment.condition.prefix, resolved as every stage reads it
        p.error(f"{a.experiment} has a condition prefix: its floor is the music protocol's, not this one")
    floor = float(cfg.oracle.floor)
    chain, L = model.data_chain.mixed(floor), int(cfg.experiment.length)
    nll, tv = [], []
    for d in range(a.draws):
        x = chain.sample(a.num, L, torch.Generator().manual_seed(1000 + d))
        nll.append(chain_nll(x, model.data_chain, floor))
        tv.append(bigram_tv(x, chain))
    for name, v in (("chain_nll", nll), ("bigram_tv", tv)):
        print(f"{a.experiment}, the chain's own samples ({a.draws} sets of {a.num}): {name} {np.mean(v):.4f} ± "
              f"{np.std(v, ddof=1) / np.sqrt(len(v)):.4f}")


if __name__ == "__main__":
    main()
