"""Training throughput of the CountDown SEDD DiT (d 128, 4 blocks, 4 heads) on this CPU, fp32 and bf16.

Prints tokens per second of full training steps (forward, score entropy, backward, AdamW).
    python benchmarks/train_throughput.py [--batch 64] [--steps 5] [--threads 2]
"""
import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from models.chains import countdown_chain  # noqa: E402
from models.kernels import Absorbing  # noqa: E402
from models.noise import LogLinear  # noqa: E402
from models.process import ForwardProcess  # noqa: E402
from models.sedd import SEDD, SEDDConfig  # noqa: E402
from train.losses import score_entropy  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--length", type=int, default=256)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    process = ForwardProcess(LogLinear(1e-3), Absorbing(32))
    g = torch.Generator().manual_seed(0)
    x0 = countdown_chain().sample(args.batch, args.length, g)
    print(f"batch {args.batch} x length {args.length}, {args.threads} threads")
    print(f"{'precision':<10}{'s/step':>9}{'tokens/s':>11}")
    for bf16 in (False, True):
        torch.manual_seed(0)
        net = SEDD(SEDDConfig(vocab_size=33, hidden_size=128, cond_dim=128, n_blocks=4, n_heads=4)).train()
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
        times = []
        for step in range(args.steps + 1):
            t = torch.rand(args.batch, generator=g, dtype=torch.float64) * 0.999 + 1e-3
            x_t = process.sample(x0, t, g)
            start = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = net(x_t, process.sigma(t).float(), bf16=bf16)  # else its blocks turn autocast off
            loss = score_entropy(out.float(), x_t, x0, t, process).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            if step:  # the first step warms up
                times.append(time.perf_counter() - start)
        per_step = sum(times) / len(times)
        print(f"{'bf16' if bf16 else 'fp32':<10}{per_step:>9.3f}{args.batch * args.length / per_step:>11,.0f}")


if __name__ == "__main__":
    main()
