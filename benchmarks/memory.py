"""Peak memory of one KLUB evaluation and one sampler step at a real vocabulary.

    python benchmarks/memory.py [--states 50257 --length 1024 --batch 2]

Each measurement runs in a fresh process: it builds the inputs, notes the resident set, runs the
operation once and reads the peak resident set (getrusage). Reported: the peak beyond the memory
before the operation, less one network output (the stand-in network allocates exactly its output,
[B, L, S] float32), in units of B·L·S·4 bytes. Target: at most 6. The last column is the largest batch
whose outputs and these temporaries fit 80 GB of GPU memory by that figure: 80e9 / ((units + 1)·L·S·4),
before the network's own weights and activations.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def measure(kind: str, kernel: str, states: int, length: int, batch: int) -> dict:
    import torch

    from jys.klub import coarse_read, klub_terms
    from models.kernels import make_kernel
    from models.noise import LogLinear
    from models.process import ForwardProcess
    from models.protocol import ModelOutput
    from samplers.steps import euler_step

    torch.set_num_threads(2)
    proc = ForwardProcess(LogLinear(), make_kernel(kernel, states))
    S = proc.num_states

    class StandIn:
        """Log scores from a seeded normal, written in place into the one output tensor. [B, L, S]"""

        process = proc

        def __call__(self, x, t):
            out = torch.empty(*x.shape, S).normal_(generator=torch.Generator().manual_seed(int(t[0] * 1e6)))
            return ModelOutput("score", out.scatter_(-1, x.unsqueeze(-1), 0.0))

    model = StandIn()
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, proc.data_states, (batch, length), generator=g)
    t1, t2 = torch.full((batch,), 0.6, dtype=torch.float64), torch.full((batch,), 0.5, dtype=torch.float64)
    unit = batch * length * S * 4
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if kind == "klub":  # the forward pair, the stored coarse read at (x_{t1}, t1), then one evaluation at t2
        x1, x2 = proc.sample_pair(x0, t1, t2, g)
        coarse = coarse_read(model, x1, t1, batch)
        klub_terms(proc, coarse, model(x2, t2), x2, t2, "girsanov")
    else:
        x1 = proc.sample(x0, t1, g)
        euler_step(model, x1, 0.6, 0.5, g)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    extra = peak - before - unit  # beyond one network output
    return {"what": kind, "kernel": kernel, "states": S, "length": length, "batch": batch,
            "peak_beyond_output_mb": round(extra / 2**20, 1), "in_units_of_BLS4": round(extra / unit, 2)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--states", type=int, default=50257)
    p.add_argument("--length", type=int, default=1024)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--one", nargs=2, metavar=("KIND", "KERNEL"), help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.one:
        print(json.dumps(measure(a.one[0], a.one[1], a.states, a.length, a.batch)))
        return
    from results.bench import BenchTable  # here: each measuring process starts without it

    print(f"S = {a.states} data states, L = {a.length}, batch {a.batch}; unit B·L·S·4 bytes; target <= 6 units")
    table = BenchTable("memory", ["operation", "kernel", "peak beyond one output (MiB)", "units", "batch on 80 GB"],
                       f"S = {a.states:,}, L = {a.length:,}, batch {a.batch}; a unit is B·L·S·4 bytes "
                       f"({a.batch * a.length * a.states * 4 / 2**20:,.0f} MiB).")
    for kind in ("klub", "euler"):
        for kernel in ("absorbing", "uniform"):
            out = subprocess.run([sys.executable, __file__, "--one", kind, kernel, "--states", str(a.states),
                                  "--length", str(a.length), "--batch", str(a.batch)],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            name = "KLUB evaluation" if kind == "klub" else "Euler step"
            per_sequence = (max(r["in_units_of_BLS4"], 0.0) + 1) * a.length * r["states"] * 4
            table.row(name, kernel, f"{r['peak_beyond_output_mb']:,.0f}", f"{r['in_units_of_BLS4']:.2f}",
                      f"{int(80e9 // per_sequence)}")
    table.save()


if __name__ == "__main__":
    main()
