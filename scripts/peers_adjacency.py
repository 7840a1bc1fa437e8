"""Why confidence and EB lose on CountDown: how often the first call reveals neighbouring positions together.

    python scripts/peers_adjacency.py [--num 64] [--reveal 32] [--gamma 56.23]

On the exact oracle, one call of each count-grid sampler from the all-masked state, revealing --reveal of 256
tokens, and EB-Sampler's first call at γ = --gamma (what it reveals varies); prints the share of revealed positions whose right neighbour was revealed in the same call (uniformly
chosen positions: about reveal/256). Two neighbours drawn independently from their marginals break the
CountDown transition between them almost surely.
"""
import argparse

import torch

from models.chains import countdown_chain
from models.kernels import Absorbing
from models.noise import LogLinear
from models.oracle import OracleModel
from models.process import ForwardProcess
from samplers.loop import prior_sample
from samplers.schedules import times_from_counts
from samplers.steps import kgillespie_step
from samplers.unmasking import confidence_step, dus_step, eb_sample


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--num", type=int, default=64)
    ap.add_argument("--reveal", type=int, default=32)
    ap.add_argument("--gamma", type=float, default=56.23, help="EB's γ (56.23: the oracle's 8-call budget)")
    a = ap.parse_args()
    proc = ForwardProcess(LogLinear(1e-3), Absorbing(32))
    oracle = OracleModel(countdown_chain(), proc)
    t1, t2 = times_from_counts([0, a.reveal], proc, 256).tolist()
    steps = {"kgillespie": kgillespie_step, "confidence (max)": confidence_step,
             "confidence (margin)": lambda *args: confidence_step(*args, confidence="margin"), "dus": dus_step}
    for name, step in steps.items():
        g = torch.Generator().manual_seed(0)
        revealed = step(oracle, prior_sample(proc, a.num, 256, g), t1, t2, g) != 32
        share = (revealed[:, :-1] & revealed[:, 1:]).sum().item() / revealed.sum().item()
        print(f"{name:<22}{share:.3f}")
    seen = []
    first_calls = lambda x, t: seen.append(x.clone()) or oracle(x, t)  # noqa: E731
    first_calls.process = proc
    eb_sample(first_calls, prior_sample(proc, a.num, 256, torch.Generator().manual_seed(0)),
              torch.Generator().manual_seed(0), a.gamma)
    revealed = seen[1] != 32  # the state after EB's first call
    share = (revealed[:, :-1] & revealed[:, 1:]).sum().item() / revealed.sum().item()
    print(f"{'eb (γ ' + format(a.gamma, 'g') + ')':<22}{share:.3f}   ({revealed.sum(1).double().mean():.1f} tokens revealed)")


if __name__ == "__main__":
    main()
