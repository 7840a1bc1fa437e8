"""EB-Sampler's γ for target budgets of model calls: bisection in log γ on a pilot run.

    python scripts/eb_tune.py experiment=count model=oracle [--budgets 4 8 16 32] [--pilot 64] [overrides]

EB's calls per sequence fall as γ grows, but they are random and a step function of γ, so each budget gets the γ
whose pilot (its own seed, --pilot-seed, never a sampling seed) spends the mean calls closest to it, in at most
--iters bisection steps over [1e-4, 1e4]. Prints the γs on one line (a Hydra multirun list) and writes
runs/<experiment>/<model>/eb_gamma.json, which a rerun with the same model and settings reuses.
"""
from __future__ import annotations

import argparse
import json
import math
import sys

from common.io import atomic_write_json
from pipeline.build import build_model, compose_config, model_identity, setup_torch
from pipeline.experiment import experiment_of
from pipeline.runs import cache_key, run_dir
from samplers.loop import run_sampler
from samplers.schedules import uniform


def pilot_calls(model, gamma: float, num: int, length: int, seed: int, batch: int) -> float:
    res = run_sampler(model, "eb", uniform(1), num, length, seed, batch_size=batch,
                      progress=False, gamma=gamma)
    return float(res.sequence_calls.double().mean())


def tune(model, budget: float, num: int, length: int, seed: int, batch: int, iters: int) -> dict:
    lo, hi = math.log(1e-4), math.log(1e4)  # calls(e^lo) >= budget >= calls(e^hi), as far as the range allows
    tried = {}
    for _ in range(iters):
        mid = (lo + hi) / 2
        calls = pilot_calls(model, math.exp(mid), num, length, seed, batch)
        tried[math.exp(mid)] = calls
        if calls > budget:
            lo = mid
        else:
            hi = mid
        if abs(calls - budget) <= 0.02 * budget:
            break
    gamma, calls = min(tried.items(), key=lambda kv: (abs(kv[1] - budget), kv[0]))
    return {"budget": budget, "gamma": float(f"{gamma:.4g}"), "pilot_calls": calls, "tried": len(tried)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--budgets", type=float, nargs="+", default=[4, 8, 16, 32])
    p.add_argument("--pilot", type=int, default=64, help="sequences per pilot run")
    p.add_argument("--pilot-seed", type=int, default=1000)
    p.add_argument("--iters", type=int, default=12)
    a, overrides = p.parse_known_args()
    cfg = compose_config(["sampler=eb", "progress=false", *overrides])
    setup_torch(cfg)
    model = build_model(cfg)
    length, batch = int(cfg.experiment.length), int(cfg.batch_size)
    if experiment_of(cfg).prefix:
        raise ValueError("eb_tune draws unconditional pilots; experiment.condition.prefix is not supported here yet")
    key, _ = cache_key("eb", {"model_identity": model_identity(model), "experiment": experiment_of(cfg).config,
                              "pilot": a.pilot, "pilot_seed": a.pilot_seed,
                              "iters": a.iters, "length": length, "batch_size": batch})
    path = run_dir(cfg) / "eb_gamma.json"
    done = {}
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("key") == key:
            done = {float(r["budget"]): r for r in saved["budgets"]}
    for budget in a.budgets:
        if budget not in done:
            done[budget] = tune(model, budget, a.pilot, length, a.pilot_seed, batch, a.iters)
            atomic_write_json(path, {"key": key, "budgets": sorted(done.values(), key=lambda r: r["budget"])})
        r = done[budget]
        print(f"budget {budget:g}: gamma {r['gamma']:g}, pilot mean calls {r['pilot_calls']:.2f}", file=sys.stderr)
    print(",".join(f"{done[b]['gamma']:g}" for b in a.budgets))


if __name__ == "__main__":
    main()
