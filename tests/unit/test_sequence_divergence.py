"""Divergences of samples from a chain (metrics/sequences.py) against hand computations and brute-force
enumeration; the chain's continuation sampler against its conditional law; the twins' config path."""
import itertools
from fractions import Fraction as Fr

import numpy as np
import pytest
import scipy.stats
import torch

from metrics.music import hellinger_to, mean_and_se
from metrics.sequences import bigram_tv, chain_marginals, chain_reference, token_entropy_gap, unigram_tv
from models.chains import MarkovChain, load_chain, smooth_chain

# A 3-state chain whose laws are exact in binary fractions.
HAND = MarkovChain(torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64),
                   torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.5, 0.5], [0.5, 0.0, 0.5]], dtype=torch.float64))


def tiny_chain(seed=0, S=3):
    g = np.random.default_rng(seed)
    T = g.dirichlet(np.ones(S), size=S)
    T[0, S - 1] = 0.0  # a forbidden transition
    T[0] /= T[0].sum()
    return MarkovChain(torch.tensor(g.dirichlet(np.ones(S))), torch.tensor(T))


def test_unigram_and_bigram_tv_by_hand():
    x = torch.tensor([[0, 1, 2], [0, 0, 1]])
    # m0 = (1/2, 1/4, 1/4), m1 = m0 T = (3/8, 3/8, 1/4), m2 = m1 T = (5/16, 3/8, 5/16); pooled f = mean;
    # f̂ = (3/6, 2/6, 1/6): TV = ½(|1/2 − 19/48| + |1/3 − 1/3| + |1/6 − 13/48|) = 5/48
    assert unigram_tv(x, HAND) == pytest.approx(float(Fr(5, 48)), abs=1e-15)
    # pairs (0,1) ×2, (1,2), (0,0) of 4; m̄ = (m0 + m1)/2 = (7/16, 5/16, 1/4), f(a,b) = m̄(a) T(a,b):
    # TV = ½(|1/2 − 7/32| + |1/4 − 5/32| + |1/4 − 7/32| + 5/32 (1,1) + 1/8 (2,0) + 1/8 (2,2)) = 13/32
    assert bigram_tv(x, HAND) == pytest.approx(float(Fr(13, 32)), abs=1e-15)


def test_tv_with_a_prefix_by_hand():
    x = torch.tensor([[0, 1, 2], [2, 2, 0]])  # K = 1: x_0 is given
    # m0 = empirical law of the prefixes (1/2, 0, 1/2); m1 = (1/2, 1/4, 1/4); m2 = (3/8, 3/8, 1/4)
    # generated tokens 1, 2, 2, 0: f̂ = (1/4, 1/4, 1/2) against mean(m1, m2) = (7/16, 5/16, 1/4): TV = 1/4
    assert unigram_tv(x, HAND, prefix=1) == pytest.approx(0.25, abs=1e-15)
    # pairs l = 0..1, the first joining the prefix: (0,1), (1,2), (2,2), (2,0), each 1/4; m̄ = (m0 + m1)/2 =
    # (1/2, 1/8, 3/8): f = (0,0) 1/4, (0,1) 1/4, (1,1) 1/16, (1,2) 1/16, (2,0) 3/16, (2,2) 3/16; TV = 5/16
    assert bigram_tv(x, HAND, prefix=1) == pytest.approx(float(Fr(5, 16)), abs=1e-15)


def brute_pooled(chain, L, prefixes=None):
    """Pooled unigram [S] and bigram [S, S] laws over the generated part by enumerating every sequence
    (every continuation of each prefix, averaged over prefixes)."""
    S = chain.num_states
    prefixes = [()] if prefixes is None else [tuple(p) for p in prefixes.tolist()]
    K = len(prefixes[0])
    uni, bi = np.zeros(S), np.zeros((S, S))
    T, init = chain.transition.numpy(), chain.initial.numpy()
    for pre in prefixes:
        for cont in itertools.product(range(S), repeat=L - K):
            seq = pre + cont
            p = init[seq[0]] if K == 0 else 1.0
            for l in range(max(K, 1), L):
                p *= T[seq[l - 1], seq[l]]
            for l in range(K, L):
                uni[seq[l]] += p / (L - K)
            first = max(K - 1, 0)
            for l in range(first, L - 1):
                bi[seq[l], seq[l + 1]] += p / (L - 1 - first)
    return uni / len(prefixes), bi / len(prefixes)


@pytest.mark.parametrize("K", [0, 2])
def test_exact_pooled_laws_equal_brute_force(K):
    chain, L = tiny_chain(), 4
    g = torch.Generator().manual_seed(0)
    samples = chain.sample(7, L, g)  # the prefixes (K > 0) are the samples' own first tokens
    uni, bi = brute_pooled(chain, L, samples[:, :K] if K else None)
    m = chain_marginals(chain, L, samples[:, :K]).numpy()
    assert np.allclose(m[K:].mean(0), uni, atol=1e-14)
    first = max(K - 1, 0)
    assert np.allclose(m[first:L - 1].mean(0)[:, None] * chain.transition.numpy(), bi, atol=1e-14)
    # and the metrics are the TV against those brute-force laws
    gen = samples[:, K:].reshape(-1)
    f_hat = np.bincount(gen.numpy(), minlength=3) / gen.numel()
    assert unigram_tv(samples, chain, K) == pytest.approx(0.5 * np.abs(f_hat - uni).sum(), abs=1e-14)
    pairs = np.zeros((3, 3))
    np.add.at(pairs, (samples[:, first:-1].numpy(), samples[:, first + 1:].numpy()), 1)
    pairs /= pairs.sum()
    assert bigram_tv(samples, chain, K) == pytest.approx(0.5 * np.abs(pairs - bi).sum(), abs=1e-14)


def test_samples_of_the_chain_score_near_zero_and_a_collapse_does_not():
    chain, L = smooth_chain(7), 24
    x = chain.sample(4000, L, torch.Generator().manual_seed(1))
    assert unigram_tv(x, chain) < 0.02 and bigram_tv(x, chain) < 0.05
    collapsed = torch.full_like(x, 3)
    assert unigram_tv(collapsed, chain) > 0.5 and bigram_tv(collapsed, chain) > 0.5
    with pytest.raises(ValueError, match=r"samples hold tokens in \[0, 7\], but the chain has 7 states"):
        unigram_tv(torch.tensor([[0, 7]]), chain)
    with pytest.raises(ValueError, match=r"condition prefix 3 must lie in \[0, 3\)"):
        bigram_tv(torch.zeros(2, 3, dtype=torch.long), chain, prefix=3)


@pytest.mark.parametrize("K", [0, 6])
def test_entropy_gap_sign_and_zero_for_the_chain_itself(K):
    chain, L = smooth_chain(7), 24
    g = torch.Generator().manual_seed(2)
    x = chain.sample(2000, L, g)  # with K > 0 its first K tokens are the prefixes
    ref = chain_reference(x, chain, K, torch.Generator().manual_seed(100))
    assert ref.shape == (6000, L)  # N·⌈4096 / N⌉: each prefix continued 3 times
    if K:  # row r continues the prefix of sample r mod N
        assert torch.equal(ref[:, :K], x[torch.arange(6000) % 2000, :K])
    assert abs(token_entropy_gap(x, ref, K)) < 0.02  # standard error of the difference ≈ 0.006
    collapsed = x.clone()
    collapsed[:, K:] = x[:, K:K + 1]  # every generated token repeats the first: entropy 0
    assert token_entropy_gap(collapsed, ref, K) < -0.5
    spread = x.clone()
    spread[:, K:] = torch.arange(L - K) % 7  # every state equally often: the largest entropy
    assert token_entropy_gap(spread, ref, K) > 0.1


def test_continuations_keep_the_prefix_and_follow_the_conditional_law():
    chain, L, K, n = tiny_chain(3), 4, 2, 6000
    prefixes = torch.tensor([[0, 1], [2, 0]]).repeat_interleave(n, 0)  # [2n, K]
    x = chain.sample_continuations(prefixes, L, torch.Generator().manual_seed(4))
    assert x.shape == (2 * n, L) and torch.equal(x[:, :K], prefixes)
    T = chain.transition.numpy()
    wrong = tiny_chain(5).transition.numpy()
    for rows, last in ((slice(0, n), 1), (slice(n, 2 * n), 0)):
        cont = x[rows, K:].numpy()
        counts = np.bincount(cont[:, 0] * 3 + cont[:, 1], minlength=9)
        law = (T[last][:, None] * T).reshape(-1)  # P(x_2 = a, x_3 = b | x_1) = T[x_1, a] T[a, b]
        keep = law > 0
        assert counts[~keep].sum() == 0  # forbidden transitions never drawn
        assert scipy.stats.chisquare(counts[keep], law[keep] * n).pvalue > 1e-3
        other = (wrong[last][:, None] * wrong).reshape(-1)[keep]
        assert scipy.stats.chisquare(counts[keep], other / other.sum() * n).pvalue < 1e-6  # the test has power
    with pytest.raises(ValueError, match=r"prefix holds tokens in \[0, 3\], expected \[0, 3\)"):
        chain.sample_continuations(torch.tensor([[0, 3]]), L, torch.Generator())
    with pytest.raises(ValueError, match=r"length >= max\(K, 1\); got N=1, K=2, length=1"):
        chain.sample_continuations(torch.tensor([[0, 1]]), 1, torch.Generator())


@pytest.mark.parametrize("S", [1, 3, 16, 50, 130])
def test_continuations_without_a_prefix_are_sample_bit_for_bit(S):
    """The two-level search finds the same first index as sample()'s full one, sparse rows included."""
    g = np.random.default_rng(S)
    T = g.dirichlet(np.full(S, 0.3), size=S)
    T[T < 0.01] = 0.0  # many zeros: ties in the CDF
    T[np.arange(S), np.arange(S)] += 1e-3
    chain = MarkovChain(torch.tensor(g.dirichlet(np.ones(S))), torch.tensor(T / T.sum(1, keepdims=True)))
    empty = torch.zeros(3000, 0, dtype=torch.long)
    assert torch.equal(chain.sample_continuations(empty, 12, torch.Generator().manual_seed(9)),
                       chain.sample(3000, 12, torch.Generator().manual_seed(9)))


def test_twin_metrics_through_the_registry(make_cfg, tmp_path):
    """An oracle experiment whose chain comes from experiment.chain_file, with a prefix and truth=chain:
    the chain metrics score the chain with the oracle's floor, and hellinger_true compares against
    continuations of each sample's prefix drawn from it (seed metrics.reference_seed)."""
    from pipeline.experiment import Experiment
    from pipeline.metrics import evaluate

    chain = smooth_chain(6)
    chain.save(tmp_path / "chain.npz")
    names = ["hellinger_true", "hellinger_true_se", "unigram_tv", "bigram_tv", "token_entropy_gap", "entropy"]
    cfg = make_cfg("experiment=chain_gauss", f"+experiment.chain_file={tmp_path / 'chain.npz'}", "experiment.length=10",
                   "+experiment.condition.prefix=3", "+experiment.truth=chain", f"experiment.metrics=[{','.join(names)}]",
                   "oracle.floor=0.01", "metrics.reference_seed=7")
    experiment = Experiment.from_config(cfg)
    assert torch.equal(experiment.chain.transition, chain.transition)  # experiment.chain_file, no override needed
    prefix = experiment.prefixes(40)
    x = chain.sample_continuations(prefix, 10, torch.Generator().manual_seed(0))
    out = evaluate(cfg, x)
    assert list(out) == names
    exact = chain.mixed(0.01)
    ref = chain_reference(x, exact, 3, torch.Generator().manual_seed(7))
    h = mean_and_se(hellinger_to(x, ref[:40], 3, 6))
    assert (out["hellinger_true"], out["hellinger_true_se"]) == pytest.approx(h, abs=1e-15)
    assert out["unigram_tv"] == unigram_tv(x, exact, 3) and out["bigram_tv"] == bigram_tv(x, exact, 3)
    assert out["token_entropy_gap"] == pytest.approx(token_entropy_gap(x, ref, 3), abs=1e-15)
    from metrics.text import token_entropy
    assert out["entropy"] == pytest.approx(token_entropy(x[:, 3:]))
    # oracle.chain_file overrides the experiment's file; a bad truth is named
    other = tmp_path / "other.npz"
    smooth_chain(6, persistence=0.5).save(other)
    overridden = make_cfg("experiment=chain_gauss", f"+experiment.chain_file={tmp_path / 'chain.npz'}",
                          f"oracle.chain_file={other}")
    assert torch.equal(Experiment.from_config(overridden).chain.transition, load_chain(other).transition)
    with pytest.raises(FileNotFoundError, match=r"reads its chain from '.*missing.npz' \(experiment.chain_file\), which "
                                                r"does not exist; fit it .*: python -m pipeline.fit_chain <experiment>"):
        Experiment.from_config(make_cfg("experiment=chain_gauss", f"+experiment.chain_file={tmp_path / 'missing.npz'}"))
    with pytest.raises(ValueError, match=r"experiment.truth='nope'; expected data or chain"):
        evaluate(make_cfg("experiment=chain_gauss", f"oracle.chain_file={tmp_path / 'chain.npz'}", "experiment.length=10",
                          "+experiment.condition.prefix=3", "+experiment.truth=nope",
                          "experiment.metrics=[hellinger_true]"), x)


def test_twin_configs_share_their_experiments_data(make_cfg):
    """Each twin reads its real experiment's files (x_0 of the search, prefixes) and runs only the oracle."""
    from omegaconf import OmegaConf

    for real in ("folk", "digits", "text"):
        twin = make_cfg(f"experiment={real}_twin")
        base = make_cfg(f"experiment={real}")
        assert OmegaConf.to_container(twin.experiment.data, resolve=True) == \
            OmegaConf.to_container(base.experiment.data, resolve=True)
        assert twin.experiment.get("condition") == base.experiment.get("condition")
        assert twin.experiment.chain == "file" and twin.experiment.chain_file == f"datasets/{real}_twin/chain.npz"
        assert list(twin.experiment.models) == ["oracle"] and twin.experiment.truth == "chain"
        assert twin.experiment.process == base.experiment.process
        assert (twin.experiment.vocab, twin.experiment.length) == (base.experiment.vocab, base.experiment.length)
