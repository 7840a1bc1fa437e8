"""Forward processes against scipy's matrix exponential and exact marginals."""
import numpy as np
import pytest
import scipy.linalg
import torch

from models.kernels import Absorbing, GaussianTarget, Uniform, make_kernel
from models.noise import Constant, Exponential, Geometric, LogLinear, make_noise
from models.process import ForwardProcess, mixing_time

KERNELS = {
    "absorbing": lambda: Absorbing(4),
    "uniform": lambda: Uniform(5),
    "gaussian": lambda: GaussianTarget(6, rate_sigma=2.0, Q_sigma=3.0),
}
SIGMAS = torch.tensor([0.05, 0.7, 2.5], dtype=torch.float64)


@pytest.mark.parametrize("name", KERNELS)
def test_transition_is_stochastic_and_matches_expm(name):
    k = KERNELS[name]()
    Q = k.rate_matrix().numpy()
    assert np.allclose(Q.sum(1), 0.0)
    assert (Q - np.diag(np.diag(Q)) >= 0).all()
    P = k.transition(SIGMAS)
    for i, s in enumerate(SIGMAS):
        expected = scipy.linalg.expm(float(s) * Q)
        if name == "gaussian":  # tauLDR zeroes transitions below 1e-8
            expected[expected < 1e-8] = 0.0
        assert np.allclose(P[i].numpy(), expected, atol=1e-10)
        assert np.allclose(P[i].sum(1).numpy(), 1.0, atol=1e-7)


@pytest.mark.parametrize("name", KERNELS)
def test_sampling_starts_from_the_stationary_law(name):
    # π Q = 0, and P(σ)[x0, ·] → π from every data state (scipy's expm at a large σ).
    k = KERNELS[name]()
    prior = k.prior_probs().numpy()
    Q = k.rate_matrix().numpy()
    assert prior.sum() == pytest.approx(1.0) and np.abs(prior @ Q).max() < 1e-14
    far = scipy.linalg.expm(60.0 * Q)[: k.data_states]
    assert np.allclose(far, prior[None, :], atol=1e-9)


@pytest.mark.parametrize("S", [16, 17])
def test_gaussian_prior_is_tauldrs_start_law_for_even_S_only(S):
    # tauLDR's get_initial_samples: ∝ exp(−((k + 1) − S//2)² / (2 Q_sigma²)) for k = 0..S−1.
    k = GaussianTarget(S, rate_sigma=2.0, Q_sigma=3.0)
    published = np.exp(-((np.arange(1, S + 1) - S // 2) ** 2) / (2 * 3.0**2))
    published /= published.sum()
    gap = np.abs(k.prior_probs().numpy() - published).max()
    assert (gap < 1e-12) if S % 2 == 0 else (gap > 1e-3)


@pytest.mark.parametrize("name", KERNELS)
def test_gathers_and_conversions_match_dense_matrices(name):
    k = KERNELS[name]()
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, k.num_states, (3, 7), generator=g)
    P = k.transition(SIGMAS)
    Q = k.rate_matrix()
    b = torch.arange(3)[:, None]
    assert torch.allclose(k.transition_rows(x, SIGMAS), P[b, x])
    assert torch.allclose(k.transition_cols(x, SIGMAS), P.transpose(1, 2)[b, x])
    assert torch.allclose(k.rate_cols(x), Q.T[x])
    # Denoiser -> concrete ratio: closed forms equal the generic Σ p(x0) P[x0,y]/P[x0,x].
    probs = torch.rand(3, 7, k.data_states, generator=g, dtype=torch.float64)
    if k.mask is not None:  # an unmasked token is its own x0
        unmasked = x != k.mask
        probs[unmasked] = torch.nn.functional.one_hot(x[unmasked], k.data_states).double()
    probs = probs / probs.sum(-1, keepdim=True)
    ratio = k.ratio_from_denoiser(probs, x, SIGMAS)
    generic = type(k).__mro__[1].ratio_from_denoiser(k, probs, x, SIGMAS)
    assert torch.allclose(ratio, generic, rtol=1e-9, atol=1e-12)
    assert torch.allclose(ratio.gather(-1, x[..., None]), torch.ones(3, 7, 1, dtype=torch.float64))
    if name != "gaussian":  # staggered score = expm(−ΔσQ)ᵀ r
        for i, s in enumerate(SIGMAS):
            M = torch.from_numpy(scipy.linalg.expm(-float(s) * Q.numpy()))
            assert torch.allclose(k.staggered(ratio, SIGMAS)[i], ratio[i] @ M, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("noise", [LogLinear(), Geometric(), Exponential(), Constant(2.0)])
def test_noise_rate_is_derivative_and_inverse_inverts(noise):
    t = torch.linspace(0.05, 0.95, 7, dtype=torch.float64)
    h = 1e-6
    numeric = (noise.total(t + h) - noise.total(t - h)) / (2 * h)
    assert torch.allclose(noise.rate(t), numeric, rtol=1e-6)
    assert torch.allclose(noise.inverse(noise.total(t)), t, rtol=1e-10)


def test_loglinear_mask_probability_is_linear_in_t():
    proc = ForwardProcess(LogLinear(eps=1e-3), Absorbing(3))
    t = torch.tensor([0.0, 0.3, 1.0], dtype=torch.float64)
    p_mask = proc.transition(t)[:, 0, 3]
    assert torch.allclose(p_mask, (1 - 1e-3) * t)


@pytest.mark.parametrize("name", KERNELS)
def test_coupled_draws_have_exact_marginals(name):
    k = KERNELS[name]()
    proc = ForwardProcess(Geometric(1e-2, 3.0), k)
    n = 40000
    g = torch.Generator().manual_seed(1)
    x0 = torch.full((1, n), k.data_states - 1, dtype=torch.long)
    t_hi, t_lo = torch.tensor([0.8]), torch.tensor([0.4])
    x_hi, x_lo = proc.sample_pair(x0, t_hi, t_lo, g)
    for x, t in ((x_hi, t_hi), (x_lo, t_lo)):
        expected = proc.transition(t)[0, k.data_states - 1].numpy()
        freq = np.bincount(x[0].numpy(), minlength=k.num_states) / n
        assert np.abs(freq - expected).max() < 4 * np.sqrt(0.25 / n)
    # The pair is the forward joint: x_hi given x_lo follows P(σ̄(t_hi) − σ̄(t_lo)).
    step = k.transition(proc.sigma(t_hi) - proc.sigma(t_lo))[0].numpy()
    for a in range(k.num_states):
        sel = x_lo[0] == a
        if sel.sum() > 2000:
            freq = np.bincount(x_hi[0][sel].numpy(), minlength=k.num_states) / int(sel.sum())
            assert np.abs(freq - step[a]).max() < 4 * np.sqrt(0.25 / int(sel.sum()))
    if k.mask is not None:
        assert ((x_lo == k.mask) <= (x_hi == k.mask)).all()  # nested masks


def test_same_uniforms_give_nested_masks_at_any_times():
    proc = ForwardProcess(LogLinear(), Absorbing(8))
    g = torch.Generator().manual_seed(2)
    x0 = torch.randint(0, 8, (4, 64), generator=g)
    u = torch.rand(x0.shape, generator=g, dtype=torch.float64)
    masks = [proc.sample(x0, torch.full((4,), t), u=u) == 8 for t in (0.9, 0.6, 0.2)]
    assert (masks[2] <= masks[1]).all() and (masks[1] <= masks[0]).all()


def test_unknown_kernel_or_noise_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown kernel 'gauss'"):
        make_kernel("gauss", 4)
    with pytest.raises(ValueError, match="unknown noise schedule 'cosine'"):
        make_noise("cosine")


def test_mixing_time_matches_closed_forms_and_brute_force():
    assert mixing_time(ForwardProcess(LogLinear(), Absorbing(8)), 0.2) == 1.0  # absorbing kernels never churn
    S, tv = 32, 0.2
    t = mixing_time(ForwardProcess(Constant(6.0), Uniform(S)), tv)
    assert t == pytest.approx(-np.log(tv / (1 - 1 / S)) / 6.0, abs=1e-5)  # e^(-6t)(1 - 1/S) = tv
    assert mixing_time(ForwardProcess(Constant(1.0), Uniform(S)), tv) == 1.0  # not mixed even at t = 1
    kernel = GaussianTarget(9, rate_sigma=1.5, Q_sigma=4.0)
    proc = ForwardProcess(Exponential(), kernel)
    t = mixing_time(proc, tv)
    Q = kernel.rate_matrix().numpy()
    pi = scipy.linalg.expm(1e4 * Q)[0]

    def tv_at(time):
        P = scipy.linalg.expm(float(proc.sigma(torch.tensor([time], dtype=torch.float64))[0]) * Q)
        return 0.5 * np.abs(P - pi).sum(1).max()

    assert tv_at(t) == pytest.approx(tv, abs=1e-3) and tv_at(t - 0.02) > tv
    with pytest.raises(ValueError, match="must lie in"):
        mixing_time(proc, 1.5)
