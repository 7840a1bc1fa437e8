"""The text twin's exact oracle: one call with the sparse-plus-rank-one transition products against the dense ones.

    python benchmarks/oracle_products.py [--chain datasets/text_twin/chain.npz] [--batch 64]

Needs the fitted chain (`python -m pipeline.fit_chain text datasets/text_twin/chain.npz`). Prints the split's rank
and density, then per noise level the seconds of one OracleModel.posterior call on `--batch` data sequences of 128
tokens each way, and the largest difference of the two posteriors.
"""
from __future__ import annotations

import argparse
import time

import torch

from models.chains import load_chain
from models.kernels import Absorbing
from models.noise import LogLinear
from models.oracle import OracleModel
from models.process import ForwardProcess


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--chain", default="datasets/text_twin/chain.npz")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--length", type=int, default=128)
    a = p.parse_args()
    chain = load_chain(a.chain)
    S = chain.num_states
    process = ForwardProcess(LogLinear(1e-3), Absorbing(S))
    oracle = OracleModel(chain, process, floor=1e-3)
    g = torch.Generator().manual_seed(0)
    x0 = chain.sample(a.batch, a.length, g)

    def noised(t: float):
        tt = torch.full((a.batch,), t, dtype=torch.float64)
        return process.sample(x0, tt, u=torch.rand(x0.shape, generator=g, dtype=torch.float64)), tt

    oracle.posterior(*noised(0.5))  # builds the split once
    products = oracle._products
    print(f"{S} states, {torch.get_num_threads()} threads: sparse part {products.density:.2%} of the entries, "
          f"{products.U.shape[1] if products.sparse else 0} rank-one parts")
    for t in (0.5, 0.9):
        x, tt = noised(t)
        times, out = {}, {}
        for sparse in (True, False):
            products.sparse = sparse
            t0 = time.perf_counter()
            out[sparse] = oracle.posterior(x, tt)
            times[sparse] = time.perf_counter() - t0
        products.sparse = True
        print(f"t = {t}: sparse {times[True]:.2f} s, dense {times[False]:.2f} s per call of {a.batch} sequences; "
              f"max |difference| {float((out[True] - out[False]).abs().max()):.1e}")


if __name__ == "__main__":
    main()
