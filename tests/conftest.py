"""Shared fixtures and tiny problems of the tests (tests/unit, tests/exact, tests/pipeline import them from here)."""
import itertools
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.stats
import torch
from hydra import compose, initialize_config_dir

from models.chains import MarkovChain
from models.kernels import Absorbing, GaussianTarget, Uniform
from models.noise import Geometric, LogLinear
from models.process import ForwardProcess

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
# under `pytest -n 2` (make test) each worker takes one of the two cores; two threads per worker fight for them
torch.set_num_threads(1 if os.environ.get("PYTEST_XDIST_WORKER") else 2)


@pytest.fixture(autouse=True)
def fresh_experiments():
    """Each test builds its experiments afresh: tests register toy datasets and rewrite chain files under names an
    earlier test used, which the per-process memo of pipeline.experiment.experiment_of would not see."""
    from pipeline import experiment

    experiment._BUILT.clear()
    yield
    experiment._BUILT.clear()


@pytest.fixture
def make_cfg(tmp_path):
    """The project's Hydra config with overrides, writing under a temporary runs_dir."""
    def make(*overrides):
        with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base=None):
            return compose("config", overrides=[f"runs_dir={tmp_path}", "progress=false", *overrides])
    return make


# A 3-state chain over sequences of 4 tokens: small enough to enumerate every sequence.
S0, L = 3, 4


def tiny_chain(seed=0):
    g = np.random.default_rng(seed)
    init = g.dirichlet(np.ones(S0))
    T = g.dirichlet(np.ones(S0), size=S0)
    T[0, 2] = 0.0  # a forbidden transition: the floor must handle it
    T[0] /= T[0].sum()
    return MarkovChain(torch.tensor(init), torch.tensor(T))


def tiny_process(kernel):
    if kernel == "absorbing":
        return ForwardProcess(LogLinear(), Absorbing(S0))
    k = Uniform(S0) if kernel == "uniform" else GaussianTarget(S0, rate_sigma=2.0, Q_sigma=100.0)
    return ForwardProcess(Geometric(1e-4, 20.0), k)  # fully mixed at t = 1, as the prior assumes


def chain_law_pvalue(samples: torch.Tensor, chain) -> float:
    """Chi-square p-value of samples [n, L] against the chain's law over all S0^L sequences."""
    seqs = list(itertools.product(range(chain.num_states), repeat=samples.shape[1]))
    index = {s: i for i, s in enumerate(seqs)}
    counts = np.bincount([index[tuple(r)] for r in samples.tolist()], minlength=len(seqs))
    expected = np.exp(chain.log_prob(torch.tensor(seqs)).numpy()) * samples.shape[0]
    return scipy.stats.chisquare(counts, expected).pvalue
