"""Scoring speed of the text judge (generative perplexity) on this machine.

    python benchmarks/judge_speed.py [--judge smollm2 | --judge NAME --judge-path DIR] [--texts 32] [--batch 16]
Scores windows of held-out Shakespeare (datasets/text/valid.txt, built by the text dataset), 400 characters
each (about the length of one 128-token sample), in fp32 and bf16; prints judge tokens per second, the load
time and the perplexity (the same in both precisions up to rounding).
"""
import argparse
import sys
import time
from pathlib import Path

import torch

from metrics.text import load_judge, token_nll
from results.bench import BenchTable

ROOT = Path(__file__).resolve().parents[1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--judge", default="smollm2")
    ap.add_argument("--judge-path")
    ap.add_argument("--texts", type=int, default=32)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    source = ROOT / "datasets/text/valid.txt"
    if not source.is_file():
        sys.exit(f"{source} is missing: build the text dataset first (python -m train experiment=text train.steps=0, "
                 "or any stage with experiment=text)")
    held_out = source.read_text()
    texts = [held_out[i * 400:(i + 1) * 400] for i in range(args.texts)]
    print(f"judge {args.judge}: {args.texts} texts of 400 characters, batch {args.batch}, {args.threads} threads")
    table = BenchTable("judge_speed", ["precision", "load s", "tokens/s", "perplexity"],
                       f"Judge {args.judge}: {args.texts} held-out texts of 400 characters, batch {args.batch}, "
                       f"{args.threads} threads.")
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        start = time.perf_counter()
        judge = load_judge(args.judge, args.judge_path, "cpu", dtype)
        loaded = time.perf_counter() - start
        token_nll(judge, texts[:2], args.batch)  # warm-up
        start = time.perf_counter()
        total, count = token_nll(judge, texts, args.batch)
        speed = count / (time.perf_counter() - start)
        table.row(name, f"{loaded:.1f}", f"{speed:,.0f}", f"{torch.tensor(total / count).exp().item():.1f}")
        load_judge.cache_clear()
    table.save()


if __name__ == "__main__":
    main()
