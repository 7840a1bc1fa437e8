"""scripts/model_nll.py: with the exact oracle's ratios the score-entropy integral plus the prior's term
KL(p_1(· | x0) ‖ p_1) is −log p(x0) itself (the ELBO of the exact reverse process is tight for every x0), under an
absorbing and a uniform kernel: by enumeration and quadrature, and the script's Monte Carlo estimate around it."""
import importlib.util
import itertools

import numpy as np

import pytest
import torch

from conftest import ROOT, S0, tiny_chain, tiny_process
from models.kernels import Uniform
from models.noise import LogLinear
from models.oracle import OracleModel
from models.process import ForwardProcess
from models.protocol import concrete_ratios
from train.losses import score_entropy

F64 = torch.float64


def model_nll_script():
    spec = importlib.util.spec_from_file_location("model_nll", ROOT / "scripts" / "model_nll.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def process_for(kernel: str) -> ForwardProcess:
    """Noise with σ̄(0) = 0, so that the integral starts at x0 itself (under geometric noise it would start at σ̄ =
    1e-4, and for an unlikely x0 the part of the bound below that is not small)."""
    return tiny_process("absorbing") if kernel == "absorbing" else ForwardProcess(LogLinear(), Uniform(S0))


def all_states(states: int, length: int) -> torch.Tensor:
    return torch.tensor(list(itertools.product(range(states), repeat=length)))


def forward_law(process, x0: torch.Tensor, xs: torch.Tensor, t: float) -> torch.Tensor:
    """q(x_t = xs[k] | x0) for every k [K]: a product over tokens."""
    P = process.transition(torch.tensor([t], dtype=F64))[0]  # [S_data or S, S]
    return P[x0.unsqueeze(0).expand_as(xs), xs].prod(-1)


@pytest.mark.parametrize("kernel", ["absorbing", "uniform"])
def test_the_integral_plus_the_prior_term_is_the_exact_log_likelihood(kernel):
    process = process_for(kernel)
    model = OracleModel(tiny_chain(), process, floor=1e-3)
    chain = model.data_chain.mixed(1e-3)
    length = 3
    xs = all_states(process.num_states, length)  # every x_t
    data = all_states(process.data_states, length)
    p_data = chain.log_prob(data).double().exp()
    lo, hi = (float(process.sigma(torch.tensor([t], dtype=F64))) for t in (0.0, 1.0))
    assert lo == 0.0
    # in u = log σ̄ from σ̄ = 1e-12 (dσ̄ = σ̄ du): for an unlikely x0 its neighbours' mass reaches it within σ̄ ~ p(x0)
    # / p(neighbour), a feature near 0 that nodes uniform in σ̄ miss; below 1e-12 the integrand is bounded
    nodes, weights = np.polynomial.legendre.leggauss(400)
    a, b = np.log(1e-12), np.log(hi)
    sig = torch.tensor(np.exp(a + (b - a) * (nodes + 1) / 2))
    weights = torch.tensor(weights) * (b - a) / 2 * sig  # ∫ f dσ̄ = ∫ f σ̄ du
    ts = process.noise.inverse(sig).clamp(0.0, 1.0)
    for x0 in data[[0, 7, 19]]:
        integral = 0.0
        for t, w in zip(ts.tolist(), weights.tolist()):
            q = forward_law(process, x0, xs, t)
            keep = q > 0
            tt = torch.full((int(keep.sum()),), t, dtype=F64)
            r = concrete_ratios(model(xs[keep], tt), xs[keep], tt, process)
            f = score_entropy(r.clamp_min(1e-300).log(), xs[keep], x0.expand(len(tt), -1), tt, process)
            integral += w * float((q[keep] * f).sum() / process.sigma_rate(tt[:1]))  # dt = dσ̄ / σ̄'
        q1 = forward_law(process, x0, xs, 1.0)
        p1 = torch.stack([forward_law(process, d, xs, 1.0) for d in data], 1) @ p_data  # the true marginal at t = 1
        prior = float(torch.where(q1 > 0, q1 * (q1.log() - p1.log()), 0.0).sum())
        want = -float(chain.log_prob(x0.unsqueeze(0)))
        assert integral + prior == pytest.approx(want, abs=1e-6)
        assert prior < 0.01 * want  # what the script leaves out is small


@pytest.mark.slow
@pytest.mark.parametrize("kernel", ["absorbing", "uniform"])
def test_the_monte_carlo_estimate_is_unbiased_under_the_oracle(kernel):
    script = model_nll_script()
    model = OracleModel(tiny_chain(), process_for(kernel), floor=1e-3)
    chain = model.data_chain.mixed(1e-3)  # the law the oracle is exact for
    x0 = chain.sample(4, 3, torch.Generator().manual_seed(1))
    copies = 300  # independent estimates of each sequence's bound (its own times and forward draws per row)
    got = script.negative_elbo(model, x0.repeat(copies, 1), times=100, seed=0, batch_size=1200).reshape(copies, 4)
    mean, se = got.mean(0), got.std(0) / copies**0.5
    want = -chain.log_prob(x0).double() / x0.shape[1]
    assert float(se.max()) < 0.05, se  # the check below resolves a bias of about a tenth of a nat
    # within 4 standard errors per sequence; absorbing also carries the left-out prior term, e^{−σ̄(1)} = 1e-3
    assert ((mean - want).abs() < 4 * se + 2e-3).all(), (mean.tolist(), want.tolist(), se.tolist())


def test_paired_differences_are_the_mean_and_standard_error_of_per_sequence_differences():
    g = torch.Generator().manual_seed(S0)
    a, b, c = (torch.randn(40, generator=g, dtype=torch.float64) for _ in range(3))
    rows = {"heldout": {"num": 40, "per_sequence": c.tolist()},
            "uniform.npz": {"num": 40, "per_sequence": a.tolist()},
            "jys.npz": {"num": 40, "per_sequence": b.tolist()},
            "small.npz": {"num": 3, "per_sequence": [1.0, 2.0, 3.0]}}
    lines = model_nll_script().paired(rows)
    assert len(lines) == 1 and lines[0].startswith("jys.npz − uniform.npz: ")  # held-out and other sizes unpaired
    d = (b - a).numpy()
    mean, se = d.mean(), d.std(ddof=1) / np.sqrt(len(d))
    assert f"{mean:+.4f} ± {se:.4f}" in lines[0]
    same = model_nll_script().paired({"a.npz": rows["uniform.npz"], "b.npz": rows["uniform.npz"]})
    assert same == ["b.npz − a.npz: +0.0000 ± 0.0000 paired"]  # identical files: no ratio to a zero s.e.
