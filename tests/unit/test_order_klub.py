"""J for samplers that reveal positions in a fixed order (jys.order): against the KL of the two reveal paths by
enumeration, and its DP against brute force."""
import itertools
import math

import pytest
import torch

from jys.lattice import optimal_grids
from jys.order import order_table, order_terms, resolve_order
from models.chains import MarkovChain
from models.oracle import OracleModel
from models.process import make_process
from samplers.unmasking import dilated_order

F64 = torch.float64


def _setup(L=4):
    chain = MarkovChain(torch.tensor([0.5, 0.3, 0.2]), torch.tensor([[0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.7, 0.2, 0.1]]))
    process = make_process({"noise": {"name": "loglinear"}, "kernel": {"name": "absorbing", "num_states": 3}})
    model = OracleModel(chain, process, floor=1e-3)
    states = torch.tensor(list(itertools.product(range(3), repeat=L)), dtype=torch.long)
    truth = model.chain.log_prob(states).exp()  # the law the oracle's denoiser is exact for
    return model, states, truth / truth.sum()


def _conditional(states, truth, given: list[int], at: int) -> dict:
    """p(x_at | x_given) by summing the joint table: {values of x_given: [3] probabilities}."""
    out = {}
    for key in set(tuple(s[given].tolist()) for s in states):
        rows = (states[:, given] == torch.tensor(key)).all(1) if given else torch.ones(len(states), dtype=torch.bool)
        p = torch.zeros(3, dtype=F64).index_add_(0, states[rows, at], truth[rows])
        out[key] = p / p.sum()
    return out


def _exact_kl(states, truth, order: list[int], counts: list[int]) -> float:
    """KL(data ‖ the sampler's law): each step draws its slots' tokens independently given the revealed ones."""
    q = torch.ones(len(states), dtype=F64)
    for k, k2 in zip(counts, counts[1:]):
        given = order[:k]
        for j in range(k, k2):
            cond = _conditional(states, truth, given, order[j])
            q *= torch.stack([cond[tuple(s[given].tolist())][s[order[j]]] for s in states])
    return float((truth * (truth / q).log()).sum())


def test_order_objective_is_the_exact_kl_of_the_sampler_on_a_tiny_chain():
    model, states, truth = _setup()
    order = dilated_order(4)  # 0 2 | 1 3
    D, calls = order_terms(model, states, order, batch_size=32, weights=truth)  # each sequence by its probability
    assert calls == 4 * math.ceil(len(states) / 32)
    for counts in ([0, 2, 4], [0, 1, 4], [0, 3, 4], [0, 4], [0, 1, 2, 3, 4]):
        J = sum(float(D[a, b]) for a, b in zip(counts, counts[1:]))
        assert J == pytest.approx(_exact_kl(states, truth, order.tolist(), counts), rel=1e-8, abs=1e-12)
    assert float(D[0, 1]) == 0.0 and float(D[2, 3]) == 0.0  # one token per call: the refined path itself


def test_order_dp_equals_brute_force_and_respects_the_first_count():
    model, states, truth = _setup()
    x0 = model.chain.sample(64, 4, torch.Generator().manual_seed(0))
    D, counts, _ = order_table(model, x0, dilated_order(4), low=2)
    assert counts == [0, 2, 3, 4] and D.shape == (4, 4) and math.isinf(float(D[1, 0]))
    best = optimal_grids(D, 3)
    for n in (1, 2, 3):
        brute = min(((0, *inner, 3) for inner in itertools.combinations(range(1, 3), n - 1)),
                    key=lambda g: sum(float(D[a, b]) for a, b in zip(g, g[1:])))
        assert tuple(best[n][0]) == brute


def test_order_setting_resolves_per_sampler_and_refuses_unknown_names():
    assert resolve_order("auto", "dus") == "dus" and resolve_order("auto", "kgillespie") == "random"
    with pytest.raises(ValueError, match="unknown jys.order 'spiral'"):
        resolve_order("spiral", "dus")
    model, states, _ = _setup()
    with pytest.raises(ValueError, match="permutation of the 4 positions"):
        order_terms(model, states[:4], torch.tensor([0, 0, 1, 2]))
    with pytest.raises(ValueError, match="above jys.max_bytes"):
        order_terms(model, states, dilated_order(4), max_bytes=1000)
