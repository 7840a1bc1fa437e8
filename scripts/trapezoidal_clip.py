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
from models.protocol import concrete_ratios, rates_from_ratios
from pipeline.build import build_model
from pipeline.experiment import experiment_of


def rates(model, x, t):
    """R̂_t(x)_{l, y} [B, L, S], as the samplers read it."""
    tb = torch.full((x.shape[0],), float(t), dtype=torch.float64)
    return rates_from_ratios(concrete_ratios(model(x, tb), x, tb, model.process), x, tb, model.process)


def main(experiment_name: str, schedule: str, overrides: list[str]) -> None:
    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[1] / "configs"), version_base=None):
        cfg = compose("config", overrides=[f"experiment={experiment_name}", "model=oracle", "progress=false",
                                           *overrides])
    experiment = experiment_of(cfg)
    model = build_model(cfg, experiment)
    x0 = experiment.sample_x0(64, torch.Generator().manual_seed(0))
    with open(schedule) as f:
        times = json.load(f)["times"]
    clipped_all = live_all = 0
    for t, s in zip(times[:-1], times[1:]):
        tm = (t + s) / 2
        qs = [tm - f * (tm - s) for f in (0.25, 0.5, 0.75)]
        lat = PathLattice(model, x0, [t, tm, *qs], "tau", 0, "girsanov")
        extrapolated = 2 * rates(model, lat.x[1], tm) - rates(model, lat.x[0], t)
        clipped = live = 0
        clipped_rate = live_rate = 0.0
        for i, q in enumerate(qs):
            true = rates(model, lat.x[2 + i], q)
            # marks by destination, at positions whose state at q is still their state at t_m
            on = (true > 1e-12) & (lat.x[2 + i] == lat.x[1])[..., None]
            cut = on & (extrapolated <= 0)
            clipped, live = clipped + int(cut.sum()), live + int(on.sum())
            clipped_rate, live_rate = clipped_rate + float((true * cut).sum()), live_rate + float((true * on).sum())
        share = clipped_rate / live_rate if live_rate > 0 else float("nan")
        print(f"step {t:.4f} -> {s:.4f}: {clipped} of {int(live)} marks with a true rate clipped, "
              f"{share:.3f} of their true rate")
        clipped_all, live_all = clipped_all + clipped, live_all + live
    print(f"all steps: {clipped_all} of {live_all} live marks clipped ({clipped_all / max(live_all, 1):.3%})")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
