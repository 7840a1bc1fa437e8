"""The oracle against brute-force Bayes over every sequence, on tiny chains, for every kernel."""
import itertools

import numpy as np
import pytest
import torch

from conftest import S0, L, tiny_chain
from models.chain_products import TransitionProducts
from models.chains import MarkovChain, countdown_chain, fit_chain, load_chain
from models.kernels import Absorbing, GaussianTarget, Uniform
from models.noise import LogLinear
from models.oracle import OracleModel
from models.process import ForwardProcess
from models.protocol import concrete_ratios

KERNELS = {"absorbing": lambda: Absorbing(S0), "uniform": lambda: Uniform(S0),
           "gaussian": lambda: GaussianTarget(S0, rate_sigma=2.0, Q_sigma=2.0)}


def brute_force(chain, proc, xt, t):
    """p(x_0,l | x_t) and p_t(x_t) by enumerating all S0^L data sequences."""
    P = proc.transition(torch.tensor([t], dtype=torch.float64))[0].numpy()[:S0]
    seqs = np.array(list(itertools.product(range(S0), repeat=L)))
    prior = np.exp(chain.log_prob(torch.from_numpy(seqs)).numpy())

    def joint(x):
        return prior * np.prod(P[seqs, np.asarray(x)[None, :]], axis=1)

    w = joint(xt)
    post = np.stack([np.bincount(seqs[:, l], weights=w, minlength=S0) for l in range(L)])
    return post / w.sum(), w.sum(), joint


@pytest.mark.parametrize("name", KERNELS)
@pytest.mark.parametrize("output", ["denoiser", "score"])
def test_oracle_posterior_and_scores_equal_brute_force(name, output):
    proc = ForwardProcess(LogLinear(), KERNELS[name]())
    oracle = OracleModel(tiny_chain(), proc, floor=1e-2, output=output)
    g = torch.Generator().manual_seed(3)
    S = proc.num_states
    for t in (0.15, 0.6, 0.95):
        xt = torch.randint(0, S, (5, L), generator=g)
        tt = torch.full((5,), t, dtype=torch.float64)
        ratios = concrete_ratios(oracle(xt, tt), xt, tt, proc).numpy()
        post = oracle.posterior(xt, tt).numpy()
        # A denoiser fixes r_y only where the reverse rate or the Tweedie step reads it: Q[y, x_l] ≠ 0 or y = x_l.
        read = (proc.kernel.rate_cols(xt) != 0).numpy() | (np.arange(S) == xt[..., None].numpy())
        if output == "score":
            read[:] = True
        for b in range(5):
            exp_post, p_x, joint = brute_force(oracle.chain, proc, xt[b].tolist(), t)
            assert np.allclose(post[b], exp_post, atol=1e-10)
            for l, y in itertools.product(range(L), range(S)):
                if not read[b, l, y]:
                    continue
                x_new = xt[b].tolist()
                x_new[l] = y
                assert np.isclose(ratios[b, l, y], joint(x_new).sum() / p_x, rtol=1e-8, atol=1e-12)


def test_countdown_chain_and_floor():
    c = countdown_chain(32)
    g = torch.Generator().manual_seed(0)
    x = c.sample(64, 256, g)
    nxt_ok = (x[:, 1:] == x[:, :-1] - 1) | (x[:, :-1] == 0)
    assert nxt_ok.all()
    assert torch.isfinite(c.log_prob(x)).all()
    # A forbidden x_t (two unmasked tokens the chain cannot join) is finite with a floor, an error without.
    proc = ForwardProcess(LogLinear(), Absorbing(32))
    xt = torch.full((1, 8), 32)
    xt[0, 2], xt[0, 3] = 5, 9
    t = torch.tensor([0.5], dtype=torch.float64)
    assert torch.isfinite(OracleModel(c, proc, floor=1e-3).posterior(xt, t)).all()
    with pytest.raises(ValueError, match="zero probability under the chain"):
        OracleModel(c, proc, floor=0.0).posterior(xt, t)


def test_chain_file_validation(tmp_path):
    good = tmp_path / "good.npz"
    tiny_chain().save(good)
    assert load_chain(good).num_states == S0
    bad_rows = tmp_path / "rows.npz"
    np.savez(bad_rows, initial=np.ones(3) / 3, transition=np.ones((3, 3)) / 2)
    with pytest.raises(ValueError, match="transition rows must sum to 1"):
        load_chain(bad_rows)
    bad_shape = tmp_path / "shape.npz"
    np.savez(bad_shape, initial=np.ones(3) / 3, transition=np.ones((3, 4)) / 4)
    with pytest.raises(ValueError, match=r"transition \[S, S\]"):
        load_chain(bad_shape)
    missing = tmp_path / "missing.npz"
    np.savez(missing, initial=np.ones(3) / 3)
    with pytest.raises(ValueError, match="lacks arrays \\['transition'\\]"):
        load_chain(missing)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_chain(tmp_path / "nope.npz")


@pytest.mark.parametrize("prefix", [0, 5])
def test_absorbing_pass_equals_the_general_forward_backward(prefix):
    """The absorbing shortcut (observed tokens reset the messages) against the general pass, on the CountDown chain
    with a floor, where brute force cannot go (S0 = 32, L = 48)."""
    proc = ForwardProcess(LogLinear(), Absorbing(32))
    oracle = OracleModel(countdown_chain(32), proc, floor=1e-3, prefix=prefix)
    g = torch.Generator().manual_seed(1)
    x0 = countdown_chain(32).sample(6, 48, g)
    t = torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9, 0.99], dtype=torch.float64)
    xt = proc.sample(x0, t, u=torch.rand(x0.shape, generator=g, dtype=torch.float64))
    xt[:, :prefix] = x0[:, :prefix]
    assert not oracle.observed_resets  # 32 states: the general pass is the faster one
    oracle.observed_resets = True
    fast = oracle.posterior(xt, t)
    oracle.observed_resets = False
    general = oracle.posterior(xt, t)
    assert torch.allclose(fast, general, rtol=1e-9, atol=1e-13)


def test_absorbing_pass_refuses_what_the_chain_forbids():
    """Without a floor, two unmasked tokens the chain cannot join are an error on the shortcut as on the general pass,
    for scores too (not an inf ratio)."""
    proc = ForwardProcess(LogLinear(), Absorbing(32))
    xt = torch.full((1, 8), 32)
    xt[0, 2], xt[0, 3] = 5, 9
    t = torch.tensor([0.5], dtype=torch.float64)
    oracle = OracleModel(countdown_chain(32), proc, floor=0.0, output="score")
    oracle.observed_resets = True
    for call in (oracle.posterior, oracle.ratios):
        with pytest.raises(ValueError, match="zero probability under the chain"):
            call(xt, t)


def test_transition_products_equal_the_dense_products():
    """Sparse counts plus rank-one parts (floor, background over the used states, the shared row of states never seen
    as a source) give the dense products for a fitted, floor-mixed chain; a dense chain keeps the dense product."""
    g = torch.Generator().manual_seed(3)
    seqs = torch.randint(0, 30, (6, 20), generator=g)  # 40 states: 10 never used, few transitions each
    fitted = fit_chain(seqs, 40).mixed(1e-3)
    dense = MarkovChain(torch.full((40,), 1 / 40, dtype=torch.float64),
                        torch.softmax(torch.randn(40, 40, generator=g, dtype=torch.float64), 1))
    v = torch.rand(7, 40, generator=g, dtype=torch.float64)
    for chain, sparse in ((fitted, True), (dense, False)):
        products = TransitionProducts(chain.transition)
        assert products.sparse == sparse
        assert torch.allclose(products.right(v), v @ chain.transition, rtol=1e-12, atol=1e-15)
        assert torch.allclose(products.left(v), v @ chain.transition.T, rtol=1e-12, atol=1e-15)
    pairs = {(int(a), int(b)) for row in seqs for a, b in zip(row[:-1], row[1:])}
    assert TransitionProducts(fitted.transition).density * 40 ** 2 == len(pairs)  # the counted pairs and no more
    every = fit_chain(torch.arange(36).remainder(12)[None], 12).mixed(1e-3)  # a cycle: every state used, no background part
    products = TransitionProducts(every.transition)
    assert products.sparse and products.U.shape[1] == 1
    assert torch.allclose(products.right(v[:, :12]), v[:, :12] @ every.transition, rtol=1e-12, atol=1e-15)
    assert torch.allclose(products.left(v[:, :12]), v[:, :12] @ every.transition.T, rtol=1e-12, atol=1e-15)


def test_absorbing_pass_on_a_fitted_chain_equals_the_general_pass():
    """The absorbing shortcut with the sparse products, on a fitted chain with unused and non-source states."""
    g = torch.Generator().manual_seed(4)
    chain = fit_chain(torch.randint(0, 30, (6, 20), generator=g), 40)
    proc = ForwardProcess(LogLinear(), Absorbing(40))
    oracle = OracleModel(chain, proc, floor=1e-3)
    x0 = chain.sample(5, 24, g)
    t = torch.tensor([0.2, 0.4, 0.6, 0.8, 0.95], dtype=torch.float64)
    xt = proc.sample(x0, t, u=torch.rand(x0.shape, generator=g, dtype=torch.float64))
    oracle.observed_resets = True
    fast = oracle.posterior(xt, t)
    assert oracle._products.sparse
    oracle.observed_resets = False
    assert torch.allclose(fast, oracle.posterior(xt, t), rtol=1e-9, atol=1e-13)
