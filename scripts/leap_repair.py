"""How much of a grid's first leap reaches the samples: the leap's own damage and the later steps' separated, on the
exact oracle.

    python scripts/leap_repair.py EXPERIMENT --grid 1 0.053 0.02 EPS [--grid ...] [--sampler euler] [--num 512]
        [--fine 256] [--seed 0] [Hydra overrides]

For each grid 1 = t_0 > t_1 > … > ε, four ways to reach the samples, each ending with the noise-removal call at ε:
  sampler      the grid as the sampler takes it (the first leap from the prior, then the rest);
  leap+exact   the sampler's first leap to t_1, then `--fine` uniform steps to ε (the process, nearly exactly);
  exact+rest   x_{t_1} drawn from the process (the data forward-noised to t_1), then the grid's other steps;
  exact        x_{t_1} from the process, then the fine steps (the floor every row shares).
So "leap+exact − exact" is what the first leap's error leaves in the samples when the later steps are (nearly) exact,
"exact+rest − exact" the later steps' own error on the process's states (the two parts a path KL read on the
process's paths adds), and "(sampler − leap+exact) − (exact+rest − exact)" what the later steps add when they start
from the leap's states instead: their compounding, which only a metric read on the sampler's own samples sees.
Metrics: chain NLL per token (with its standard error over the sequences) and the bigram TV to the chain. The rows
of a pair share x_{t_1} (sampler and leap+exact; exact+rest and exact: one seed each), not their later draws. Prints
a table and writes runs/<experiment>/oracle/leap-repair-<sampler>.json (or --out).
"""
from __future__ import annotations

import argparse
from functools import partial
from pathlib import Path

import torch

from common.io import atomic_write_json
from metrics.sequences import bigram_tv, chain_nll
from pipeline.build import oracle_setup
from samplers.loop import denoise, prior_sample
from samplers.schedules import check_grid
from samplers.steps import STEPS

ROOT = Path(__file__).resolve().parents[1]
F64 = torch.float64


def walk(step, model, x: torch.Tensor, times: list[float], g: torch.Generator, final: str) -> torch.Tensor:
    """The sampler's steps over `times` from x, then the noise-removal call at times[-1]."""
    for t, s in zip(times, times[1:]):
        x = step(model, x, t, s, g)
    return denoise(model, x, times[-1], g, final)


def nll_per_sequence(samples: torch.Tensor, chain) -> torch.Tensor:
    """Each sequence's NLL per token under the chain (already mixed with the oracle's floor). [N]"""
    return -chain.log_prob(samples).double() / samples.shape[1]


def main(argv: list[str] | None = None) -> Path:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("experiment")
    p.add_argument("--grid", type=float, nargs="+", action="append", required=True,
                   help="a decreasing grid from 1 to eps (repeat the option for several)")
    p.add_argument("--sampler", default="euler", choices=["euler", "tau_leaping", "tweedie"])
    p.add_argument("--num", type=int, default=512, help="samples per row")
    p.add_argument("--fine", type=int, default=256, help="uniform steps of the near-exact continuation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=None, help="default runs/<experiment>/oracle/leap-repair-<sampler>.json")
    a, overrides = p.parse_known_args(argv)
    _, cfg, model = oracle_setup(a.experiment, a.sampler, [o for o in overrides if o != "--"])
    if int(cfg.experiment.get("condition", {}).get("prefix", 0) or 0):
        raise SystemExit("leap_repair runs unconditional generation (no prefix)")
    floor, final, L = float(cfg.oracle.floor), str(cfg.final_step), int(cfg.experiment.length)
    if final == "none":
        raise SystemExit("leap_repair ends every row with the noise-removal call: final_step=sample or argmax")
    step = partial(STEPS[a.sampler], multi_jump=str(cfg.multi_jump)) if a.sampler == "tau_leaping" else STEPS[a.sampler]
    chain = model.data_chain.mixed(floor)
    rows = []
    for grid in a.grid:
        times = check_grid(torch.tensor(grid, dtype=F64)).tolist()
        if len(times) < 3 or times[0] != 1.0:
            raise SystemExit(f"grid {grid}: starts at 1 (the prior) and needs a first leap and a step after it")
        t1, eps = times[1], times[-1]
        fine = torch.linspace(t1, eps, a.fine + 1, dtype=F64).tolist()  # t1 → ε in `--fine` equal steps
        out = {}
        for name in ("sampler", "leap+exact", "exact+rest", "exact"):
            g = torch.Generator().manual_seed(a.seed)  # x_{t_1} shared within each pair of rows
            if name in ("sampler", "leap+exact"):
                x = step(model, prior_sample(model.process, a.num, L, g), times[0], t1, g)
            else:
                x0 = chain.sample(a.num, L, g)
                x = model.process.sample(x0, torch.full((a.num,), t1, dtype=F64), g)
            x = walk(step, model, x, times[1:] if name in ("sampler", "exact+rest") else fine, g, final)
            per = nll_per_sequence(x, chain)
            out[name] = {"chain_nll": chain_nll(x, model.data_chain, floor),
                         "chain_nll_se": float(per.std() / len(per) ** 0.5), "bigram_tv": bigram_tv(x, chain)}
        rows.append({"grid": times, "fine_steps": len(fine) - 1, **out})
        print(f"grid {[round(t, 4) for t in times]} ({len(times) - 1} steps; continuation {len(fine) - 1} steps)")
        for name, m in out.items():
            print(f"  {name:11s} chain NLL {m['chain_nll']:.4f} ± {m['chain_nll_se']:.4f}  bigram TV {m['bigram_tv']:.4f}")
        n = {k: v["chain_nll"] for k, v in out.items()}
        print(f"  first leap {n['leap+exact'] - n['exact']:+.4f}, later steps {n['exact+rest'] - n['exact']:+.4f}, "
              f"compounding {(n['sampler'] - n['leap+exact']) - (n['exact+rest'] - n['exact']):+.4f}, all "
              f"{n['sampler'] - n['exact']:+.4f} (chain NLL over the floor)", flush=True)
    path = a.out or ROOT / cfg.runs_dir / a.experiment / "oracle" / f"leap-repair-{a.sampler}.json"
    atomic_write_json(path, {"experiment": a.experiment, "sampler": a.sampler, "num": a.num, "seed": a.seed,
                             "model": model.identity(), "overrides": overrides, "rows": rows})
    print(f"-> {path}")
    return path


if __name__ == "__main__":
    main()
