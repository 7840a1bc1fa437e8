"""samplers.exact_law: the exact output law of Euler and τ-leaping on an enumerable chain, against their draws."""
import itertools

import pytest
import torch
from scipy.stats import chi2

from models.chains import countdown_chain
from models.kernels import Uniform
from models.noise import Constant
from models.oracle import OracleModel
from models.process import ForwardProcess
from samplers.exact_law import product_law, sampler_law
from samplers.loop import run_sampler

S, L = 3, 3


def test_product_law_by_hand():
    q = torch.tensor([[[0.2, 0.8], [0.6, 0.4]]], dtype=torch.float64)  # one state, two tokens
    assert torch.allclose(product_law(q), torch.tensor([[0.12, 0.08, 0.48, 0.32]], dtype=torch.float64))


@pytest.mark.parametrize("sampler, final", [("euler", "sample"), ("tau_leaping", "argmax"), ("tau_leaping", "sample")])
def test_exact_law_matches_the_samplers_draws(sampler, final):
    model = OracleModel(countdown_chain(S), ForwardProcess(Constant(6.0), Uniform(S)), floor=1e-2)
    states = torch.tensor(list(itertools.product(range(S), repeat=L)))
    grid = [1.0, 0.1, 0.03, 0.01]  # a first step long enough that Euler clips its stay probability
    law = sampler_law(model, states, grid, sampler, final)
    assert torch.isclose(law.sum(), torch.tensor(1.0, dtype=torch.float64))
    n = 20_000
    x = run_sampler(model, sampler, torch.tensor(grid, dtype=torch.float64), n, L, 0, batch_size=n,
                    final_step=final, progress=False).samples
    counts = torch.bincount((x * torch.tensor([S ** (L - 1 - i) for i in range(L)])).sum(1), minlength=S ** L)
    seen = law > 1e-12
    assert counts[~seen].sum() == 0
    stat = float(((counts[seen] - n * law[seen]) ** 2 / (n * law[seen])).sum())
    assert chi2.sf(stat, int(seen.sum()) - 1) > 1e-3


def test_exact_law_refuses_what_it_does_not_model():
    model = OracleModel(countdown_chain(S), ForwardProcess(Constant(6.0), Uniform(S)), floor=1e-2)
    states = torch.tensor(list(itertools.product(range(S), repeat=L)))
    with pytest.raises(ValueError, match="samplers"):
        sampler_law(model, states, [1.0, 0.01], "tweedie")
    with pytest.raises(ValueError, match="final"):
        sampler_law(model, states, [1.0, 0.01], "euler", "none")
