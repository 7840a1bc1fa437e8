"""How often the θ-trapezoidal step's extrapolated intensity (2R̂(x_m, t_m) − R̂(x_t, t))₊ clips a mark the true
process takes on [s, t_m] (R̂(x_q, q) > 0 there): where it does, the trapezoidal path measure cannot make a jump the
true one makes, and Girsanov's path KL between them is infinite (docs/results/solvers.md).

    python scripts/trapezoidal_clip.py EXPERIMENT SCHEDULE.json [overrides ...]

64 sequences on the common forward paths of jys.lattice; on each step t → s of the schedule, the marks of every
position whose state at q equals its state at the midpoint t_m, for q at ¼, ½, ¾ of the second half."""
import json
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

from jys.lattice import PathLattice
from pipeline.build import build_model
from models.protocol import concrete_ratios, rates_from_ratios
from pipeline.experiment import experiment_of


def rates(model, x, t):
    """R̂_t(x)_{l, y} [B, L, S], as the samplers read it."""
    tb = torch.full((x.shape[0],), float(t), dtype=torch.float64)
    return rates_from_ratios(concrete_ratios(model(x, tb), x, tb, model.process), x, tb, model.process)


exp, grid_file = sys.argv[1], sys.argv[2]
extra = sys.argv[3:]
with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[1] / "configs"), version_base=None):
    cfg = compose("config", overrides=[f"experiment={exp}", "model=oracle", "progress=false", *extra])
experiment = experiment_of(cfg)
model = build_model(cfg, experiment)
g = torch.Generator().manual_seed(0)
x0 = experiment.sample_x0(64, g)
times = json.load(open(grid_file))["times"]
tot_clip = tot_marks = 0
for t, s in zip(times[:-1], times[1:]):
    tm = (t + s) / 2
    qs = [tm - f * (tm - s) for f in (0.25, 0.5, 0.75)]
    ts = [t, tm] + qs
    lat = PathLattice(model, x0, ts, "tau", 0, "girsanov")
    xt, xm = lat.x[0], lat.x[1]
    Rt, Rm = rates(model, xt, t), rates(model, xm, tm)
    ext = 2 * Rm - Rt
    for i, q in enumerate(qs):
        Rq = rates(model, lat.x[2 + i], q)
        # marks by destination, at positions whose state at q is still their state at t_m
        same = (lat.x[2 + i] == xm)[..., None]
        live = (Rq > 1e-12) & same
        clip = live & (ext <= 0)
        tot_clip += int(clip.sum()); tot_marks += int(live.sum())
        w = float((Rq * clip).sum() / (Rq * live).sum())
    print(f"step {t:.4f} -> {s:.4f}: clipped marks with a true rate {int(clip.sum())} of {int(live.sum())}; their share of the true rate at q={qs[-1]:.4f}: {w:.3f}")
print(f"all steps: {tot_clip} of {tot_marks} live marks clipped ({tot_clip / max(tot_marks, 1):.3%})")
