"""Sampler overhead beyond the model calls: Euler, τ-leaping and Tweedie at batch 256, length 256.

The network is a stand-in of the CountDown DiT's cost (d 128, 4 blocks, 4 heads, MLP 4d, ~0.8M
parameters) returning SEDD-style log scores over 33 states. Prints wall time, time in model calls,
and the overhead share. Target: overhead at most 5% of the wall time.
    python benchmarks/sampler_overhead.py [--nfe 16] [--batch 256] [--length 256] [--threads 2]
"""
import argparse
import time

import torch

from models.kernels import Absorbing
from models.noise import LogLinear
from models.process import ForwardProcess
from models.protocol import ModelOutput
from results.bench import BenchTable
from samplers.loop import run_sampler
from samplers.schedules import uniform


class StandIn(torch.nn.Module):
    def __init__(self, process, d=128, blocks=4, heads=4):
        super().__init__()
        self.process = process
        S = process.num_states
        self.embed = torch.nn.Embedding(S, d)
        self.time = torch.nn.Linear(1, d)
        layer = torch.nn.TransformerEncoderLayer(d, heads, 4 * d, dropout=0.0, batch_first=True, norm_first=True)
        self.body = torch.nn.TransformerEncoder(layer, blocks, enable_nested_tensor=False)
        self.out = torch.nn.Linear(d, S)
        self.seconds = 0.0

    @torch.no_grad()
    def forward(self, x, t):
        start = time.perf_counter()
        h = self.embed(x) + self.time(t.float()[:, None])[:, None]
        logits = self.out(self.body(h)).scatter(-1, x.unsqueeze(-1), 0.0)
        self.seconds += time.perf_counter() - start
        return ModelOutput("score", logits)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nfe", type=int, default=16)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--length", type=int, default=256)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = StandIn(ForwardProcess(LogLinear(1e-3), Absorbing(32))).eval()
    print(f"stand-in network: {sum(p.numel() for p in model.parameters()):,} parameters; batch {args.batch}, "
          f"length {args.length}, {args.nfe} steps, {args.threads} threads")
    table = BenchTable("sampler_overhead", ["sampler", "model calls", "wall s", "in model s", "overhead"],
                       f"Batch {args.batch}, length {args.length}, {args.nfe} steps, {args.threads} threads, a stand-in "
                       f"network of the CountDown DiT's cost.")
    for sampler in ("euler", "tau_leaping", "tweedie"):
        model.seconds = 0.0
        start = time.perf_counter()
        res = run_sampler(model, sampler, uniform(args.nfe), args.batch, args.length,
                          0, batch_size=args.batch, progress=False)
        wall = time.perf_counter() - start
        table.row(sampler, f"{res.nfe:g}", f"{wall:.2f}", f"{model.seconds:.2f}", f"{(wall - model.seconds) / wall:.1%}")
    table.save()


if __name__ == "__main__":
    main()
