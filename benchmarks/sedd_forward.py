"""Inference cost of the CountDown SEDD (weights/count-sedd) on this CPU: one model call on a batch of
sequences, per precision (fp32, bf16 autocast) and chunk (sequences per network call).

Prints seconds per call (median of --reps) and tokens per second.
    python benchmarks/sedd_forward.py [--batch 256] [--chunks 8 16 32 64 256] [--reps 3] [--threads 2]
"""
import argparse
import statistics
import time
from pathlib import Path

import torch

from models.loaders import load_sedd
from results.bench import BenchTable

ROOT = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--weights", default=str(ROOT / "weights" / "count-sedd"))
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--length", type=int, default=256)
    ap.add_argument("--chunks", type=int, nargs="+", default=[8, 16, 32, 64, 256])
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    print(f"batch {args.batch} x length {args.length}, {args.threads} threads")
    table = BenchTable("sedd_forward", ["precision", "chunk", "s/call", "tokens/s"],
                       f"One call on {args.batch} sequences of {args.length} tokens, median of {args.reps}, "
                       f"{args.threads} threads.")
    for precision in ("fp32", "bf16"):
        for chunk in args.chunks:
            model = load_sedd("project", args.weights, precision=precision, chunk=chunk)
            x = torch.randint(0, model.process.num_states, (args.batch, args.length), generator=g)
            t = torch.rand(args.batch, generator=g, dtype=torch.float64)
            model(x, t)  # warm-up
            times = []
            for _ in range(args.reps):
                start = time.perf_counter()
                model(x, t)
                times.append(time.perf_counter() - start)
            sec = statistics.median(times)
            table.row("bf16 autocast" if precision == "bf16" else precision, chunk, f"{sec:.2f}",
                      f"{args.batch * args.length / sec:,.0f}")
    table.save()


if __name__ == "__main__":
    main()
