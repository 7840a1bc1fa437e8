"""Training throughput of the project's SEDD DiTs on this CPU, fp32 and bf16.

Prints tokens per second of full training steps (forward, score entropy, backward, AdamW).
    python benchmarks/train_throughput.py [--model count|text] [--batch 64] [--steps 5] [--threads 2]
      [--hidden H --blocks N --heads K]   (another size than the committed model's)
count: the CountDown DiT (d 128, 4 blocks, 4 heads, S = 32 + MASK, L = 256) on CountDown sequences.
text: the Shakespeare DiT (configs/training/text.yaml, S = 4096 + MASK, L = 128) on random tokens
(the cost of a step does not depend on which tokens they are).
"""
import argparse
import time
from pathlib import Path

import torch
import yaml

from models.chains import countdown_chain
from models.kernels import Absorbing
from models.noise import LogLinear
from models.process import ForwardProcess
from models.sedd import SEDD, SEDDConfig
from results.bench import BenchTable
from train.losses import score_entropy

ROOT = Path(__file__).resolve().parents[1]


def setup(name: str, batch: int, g: torch.Generator):
    if name == "count":
        arch = {"hidden_size": 128, "cond_dim": 128, "n_blocks": 4, "n_heads": 4}
        return arch, 32, countdown_chain().sample(batch, 256, g)
    train = yaml.safe_load((ROOT / "configs/training/text.yaml").read_text())
    arch = {k: train["arch"][k] for k in ("hidden_size", "cond_dim", "n_blocks", "n_heads")}
    return arch, 4096, torch.randint(0, 4096, (batch, 128), generator=g)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", choices=("count", "text"), default="count")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--hidden", type=int)
    ap.add_argument("--blocks", type=int)
    ap.add_argument("--heads", type=int)
    ap.add_argument("--precision", choices=("fp32", "bf16", "both"), default="both")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    arch, states, x0 = setup(args.model, args.batch, g)
    for key, value in (("hidden_size", args.hidden), ("n_blocks", args.blocks), ("n_heads", args.heads)):
        if value:
            arch[key] = value
    if args.hidden:
        arch["cond_dim"] = min(args.hidden, 128)
    process = ForwardProcess(LogLinear(1e-3), Absorbing(states))
    net = SEDD(SEDDConfig(vocab_size=states + 1, **arch))
    params = sum(p.numel() for p in net.parameters())
    print(f"{args.model}: {arch}, {params / 1e6:.2f} M parameters; batch {args.batch} x length {x0.shape[1]}, "
          f"{args.threads} threads")
    table = BenchTable(f"train_throughput_{args.model}", ["precision", "s/step", "tokens/s"],
                       f"The {args.model} DiT ({params / 1e6:.2f} M parameters), full training steps of batch "
                       f"{args.batch} x length {x0.shape[1]}, mean of {args.steps} after a warm-up, {args.threads} threads.")
    for bf16 in {"fp32": (False,), "bf16": (True,), "both": (False, True)}[args.precision]:
        torch.manual_seed(0)
        net = SEDD(SEDDConfig(vocab_size=states + 1, **arch)).train()
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
        table.row("bf16 autocast" if bf16 else "fp32", f"{per_step:.3f}", f"{x0.numel() / per_step:,.0f}")
    table.save()


if __name__ == "__main__":
    main()
