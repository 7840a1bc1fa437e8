"""python -m pipeline.fit_chain EXPERIMENT OUT.npz [--smoothing A]: the oracle twin of an experiment, a first-order
Markov chain fitted to its training split (models.chains.fit_chain), written atomically."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hydra import compose, initialize_config_dir

from common.io import atomic_write_npz
from models.chains import fit_chain, nll_per_token
from pipeline.experiment import Experiment

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def fit_experiment(experiment: str, out: str | Path, smoothing: float = 0.5) -> dict:
    """Fit the chain of an experiment's training split (fit_chain), write it to `out` (.npz, atomically) and
    return what the command line prints: states, used states, sequences, length, the per-token NLL of the
    valid split under the chain and under the chain mixed with `oracle.floor` (the oracle's law)."""
    names = sorted(p.stem for p in (CONFIGS / "experiment").glob("*.yaml"))
    if experiment not in names:
        raise ValueError(f"unknown experiment {experiment!r}; expected one of {names} (configs/experiment/*.yaml)")
    with initialize_config_dir(config_dir=str(CONFIGS), version_base=None):
        cfg = compose("config", overrides=[f"experiment={experiment}"])
    if not cfg.experiment.get("data"):
        raise ValueError(f"experiment {experiment!r} has no dataset files (experiment.data is null): nothing to fit "
                         "a chain to; choose an experiment with data, e.g. folk, digits or text")
    e = Experiment.from_config(cfg)
    num_states = e.vocab
    try:
        train = e.load("train")
    except (ValueError, FileNotFoundError) as err:
        raise ValueError(f"experiment {experiment!r}: cannot load its training split ({err})") from None
    chain = fit_chain(train, num_states, smoothing)
    atomic_write_npz(out, initial=chain.initial.numpy(), transition=chain.transition.numpy())
    floor = float(cfg.oracle.floor)
    stats = {"experiment": experiment, "out": str(out), "states": num_states, "smoothing": float(smoothing),
             # a used state starts a row or follows some state; an unused one has 0 everywhere (fit_chain)
             "used_states": int(((chain.initial > 0) | (chain.transition.sum(0) > 0)).sum()),
             "sequences": int(train.shape[0]), "length": int(train.shape[1]), "floor": floor}
    try:
        valid = e.load("valid")
    except (ValueError, FileNotFoundError) as err:
        stats["valid_error"] = str(err)
        return stats
    stats["valid_sequences"] = int(valid.shape[0])
    stats["valid_nll"] = nll_per_token(chain, valid)
    stats["valid_nll_floor"] = nll_per_token(chain.mixed(floor), valid)
    return stats


def main(argv: list[str]) -> None:
    p = argparse.ArgumentParser(prog="python -m pipeline.fit_chain",
                                description="Fit a first-order Markov chain to an experiment's training split.")
    p.add_argument("experiment", help="a name of configs/experiment/*.yaml with dataset files")
    p.add_argument("out", help="the .npz to write (arrays initial [S], transition [S, S])")
    p.add_argument("--smoothing", type=float, default=0.5, help="additive smoothing among used states (0.5)")
    a = p.parse_args(argv)
    try:
        st = fit_experiment(a.experiment, a.out, a.smoothing)
    except ValueError as err:
        sys.exit(f"error: {err}")
    print(f"{st['experiment']}: S = {st['states']} states, {st['used_states']} used; {st['sequences']} training "
          f"sequences of {st['length']} tokens; smoothing {st['smoothing']:g} -> {st['out']}")
    if "valid_error" in st:
        print(f"no valid split to score: {st['valid_error']}")
    else:
        print(f"valid NLL per token ({st['valid_sequences']} sequences): {st['valid_nll']:.4f} nats under the chain, "
              f"{st['valid_nll_floor']:.4f} mixed with oracle.floor = {st['floor']:g} (the oracle's law)")
        if st["valid_nll"] == float("inf"):
            print("(inf: the valid split holds tokens or transitions the fitted chain gives probability 0, e.g. "
                  "states the training split never uses; the oracle's floor covers them)")


if __name__ == "__main__":
    main(sys.argv[1:])
