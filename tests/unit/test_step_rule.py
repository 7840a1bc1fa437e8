"""The sampler-aware parts of J: the frozen-denoiser coarse path and the one-step term (jys.klub)."""
import itertools

import pytest
import torch

from jys.klub import Coarse, _image_in_x0, _step_law, carried, coarse_read, context_posterior, klub_terms, step_terms
from jys.lattice import PathLattice
from models.chains import MarkovChain
from models.oracle import OracleModel
from models.process import make_process
from samplers.steps import euler_step, tau_leaping_step

F64 = torch.float64
CHAIN = MarkovChain(torch.tensor([0.5, 0.3, 0.2]), torch.tensor([[0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.7, 0.2, 0.1]]))


def _oracle(kernel: str, noise: str = "loglinear") -> OracleModel:
    params = {"rate_sigma": 1.5, "Q_sigma": 8.0} if kernel == "gaussian" else {}
    process = make_process({"noise": {"name": noise}, "kernel": {"name": kernel, "num_states": 3, **params}})
    return OracleModel(CHAIN, process, floor=1e-3)


def _read(model, x: torch.Tensor, t: float) -> Coarse:
    tb = torch.full((x.shape[0],), t, dtype=F64)
    from models.protocol import concrete_ratios
    return Coarse(x, tb, concrete_ratios(model(x, tb), x, tb, model.process).log().float())


@pytest.mark.parametrize("kernel", ["uniform", "gaussian"])
def test_exact_step_marginal_against_enumeration(kernel):
    """P_l of _step_law is p(x_s,l | x_t) of the chain the oracle is exact for, by enumerating every x_0: carried by
    expm(−ΔσQ)ᵀ r for the uniform kernel, from the context posterior p(x0_l | x_t,−l) for the ordinal one."""
    model = _oracle(kernel)
    proc, chain = model.process, CHAIN.mixed(1e-3)
    x = torch.tensor([[2, 0, 1]])
    t, s = 0.7, 0.3
    c = coarse_read(model, x, torch.tensor([t], dtype=F64), 8)
    assert (c.log_context is not None) == (kernel == "gaussian")  # uniform kernels keep it on request (reach)
    _, P = _step_law(proc, c.log_ratio.to(F64).exp(), x, c.t, torch.tensor([s], dtype=F64), "euler", c.context())
    sig_t, sig_s = (float(proc.sigma(torch.tensor(v, dtype=F64))) for v in (t, s))
    Pt, Ps, Pd = (proc.kernel.transition(torch.tensor([v], dtype=F64))[0] for v in (sig_t, sig_s, sig_t - sig_s))
    want = torch.zeros(3, 3, dtype=F64)
    for seq in itertools.product(range(3), repeat=3):
        x0 = torch.tensor([seq])
        w = float(chain.log_prob(x0).exp()) * float(torch.prod(Pt[x0[0], x[0]]))
        for l in range(3):
            want[l] += w * Ps[seq[l]] * Pd[:, x[0, l]] / Pt[seq[l], x[0, l]]
    want /= want.sum(-1, keepdim=True)
    assert torch.allclose(P[0], want, atol=1e-9)


@pytest.mark.parametrize("rule,multi_jump", [("euler", None), ("tau_leaping", "reject"), ("tau_leaping_last", "last")])
def test_step_law_is_the_samplers_own(rule, multi_jump):
    """q of _step_law against the frequencies of the sampler's step itself (20000 draws of one sequence)."""
    model = _oracle("uniform")
    x = torch.tensor([[2, 0, 1]]).expand(20000, 3).contiguous()
    t, s = 0.6, 0.35
    c = _read(model, x[:1], t)
    q, _ = _step_law(model.process, c.log_ratio.to(F64).exp(), x[:1], c.t, torch.tensor([s], dtype=F64), rule)
    g = torch.Generator().manual_seed(0)
    y = euler_step(model, x, t, s, g) if rule == "euler" else tau_leaping_step(model, x, t, s, g, multi_jump)
    freq = torch.nn.functional.one_hot(y, 3).to(F64).mean(0)  # [L, S]
    assert torch.allclose(freq, q[0], atol=0.015)
    assert q[0, 0, 2] < 0.999  # the step moves tokens, so the test can fail


def test_step_terms_vanish_where_the_sampler_is_exact_and_grow_with_the_step():
    """Euler's step of an absorbing kernel under loglinear noise is Tweedie's (its term is ~0); under the uniform
    kernel Euler's term is positive and larger for a longer step; 'tweedie' is 0 by definition."""
    x0 = CHAIN.sample(16, 6, torch.Generator().manual_seed(1))
    ab = _oracle("absorbing")
    xt = ab.process.sample(x0, torch.full((16,), 0.8, dtype=F64), torch.Generator().manual_seed(2))
    assert step_terms(ab.process, _read(ab, xt, 0.8), torch.tensor(0.3), "euler").abs().max() < 1e-8
    un = _oracle("uniform")
    xt = un.process.sample(x0, torch.full((16,), 0.8, dtype=F64), torch.Generator().manual_seed(2))
    c = _read(un, xt, 0.8)
    short, long = (step_terms(un.process, c, torch.tensor(s), "euler") for s in (0.7, 0.2))
    assert (short > 0).all() and (long > short).all()
    assert (step_terms(un.process, c, torch.tensor(0.2), "tweedie") == 0).all()
    with pytest.raises(ValueError, match="step rule"):
        step_terms(un.process, c, torch.tensor(0.2), "heun")


@pytest.mark.parametrize("kernel", ["uniform", "gaussian"])
def test_image_of_a_step_in_x0_against_enumeration(kernel):
    """_image_in_x0 is Σ_y q(y) p(x0_l | x_{t,−l}, x_{s,l} = y) of the chain, by enumerating every x_0 with the other
    tokens at t and token l at s: p(x0 | ·) ∝ p(x0) Π_{k≠l} P_t[x0_k, x_{t,k}] · P_s[x0_l, y]."""
    model = _oracle(kernel)
    proc, chain = model.process, CHAIN.mixed(1e-3)
    x = torch.tensor([[2, 0, 1]])
    t, s = 0.7, 0.3
    c = coarse_read(model, x, torch.tensor([t], dtype=F64), 8, context=True)
    sv = torch.tensor([s], dtype=F64)
    q, _ = _step_law(proc, c.log_ratio.to(F64).exp(), x, c.t, sv, "euler", c.context())
    got = _image_in_x0(proc, c.context(), sv, q)[0]
    Pt, Ps = (proc.kernel.transition(proc.sigma(torch.tensor([v], dtype=F64)))[0] for v in (t, s))
    want = torch.zeros(3, 3, dtype=F64)
    for l in range(3):
        for y in range(3):
            post = torch.zeros(3, dtype=F64)
            for seq in itertools.product(range(3), repeat=3):
                w = float(chain.log_prob(torch.tensor([seq])).exp()) * float(Ps[seq[l], y])
                w *= float(torch.prod(torch.stack([Pt[seq[k], x[0, k]] for k in range(3) if k != l])))
                post[seq[l]] += w
            want[l] += q[0, l, y] * post / post.sum()
    assert torch.allclose(got, want, atol=1e-9)


def test_reach_term_is_below_the_step_term_and_vanishes_where_the_kernel_has_mixed():
    """Data processing: the KL of the step's image in x0 is at most the step's own KL; from t = 1 under the uniform
    kernel (mixed: every value at s has the same image) it is ~0 while Euler's clipped step costs much."""
    model = _oracle("uniform", "geometric")
    x0 = CHAIN.sample(16, 6, torch.Generator().manual_seed(1))
    for t, s in ((0.6, 0.3), (1.0, 0.9)):
        xt = model.process.sample(x0, torch.full((16,), t, dtype=F64), torch.Generator().manual_seed(2))
        c = coarse_read(model, xt, torch.full((16,), t, dtype=F64), 16, context=True)
        plain = step_terms(model.process, c, torch.tensor(s), "euler")
        reach = step_terms(model.process, c, torch.tensor(s), "euler", reach=True)
        assert (reach <= plain + 1e-12).all() and (reach >= 0).all()
        if t == 1.0:
            assert float(plain.min()) > 1.0 and float(reach.max()) < 1e-4 * float(plain.min())
        else:
            assert float(reach.mean()) > 1e-3  # an error at moderate t still reaches the sample
    score = Coarse(c.x, c.t, c.log_ratio)  # a read without the context posterior (a score model)
    with pytest.raises(ValueError, match="denoiser"):
        step_terms(model.process, score, torch.tensor(0.5), "euler", reach=True)


def test_image_keeps_the_mass_of_a_value_the_context_does_not_support():
    """Where p(x_{s,l} = y | context) is 0 the posterior of y is the likelihood P_s[·, y] alone: its mass stays."""
    from types import SimpleNamespace
    eye = torch.eye(3, dtype=F64)
    proc = SimpleNamespace(kernel=SimpleNamespace(transition=lambda sig: eye[None]), sigma=lambda s: s, data_states=3)
    context = torch.tensor([[[1.0, 0.0, 0.0]]], dtype=F64)
    law = torch.tensor([[[0.5, 0.5, 0.0]]], dtype=F64)
    got = _image_in_x0(proc, context, torch.tensor([0.1], dtype=F64), law)
    assert torch.allclose(got, law)


def test_reach_lattice_keeps_the_path_term_and_lowers_the_step_term():
    """PathLattice(weight='reach'): the same path (Girsanov) pairs as weight='none' on the same x_0 and seed, a step
    term at most the plain one; refused where the step rule is none (nothing for it to change)."""
    model = _oracle("uniform", "geometric")
    x0 = CHAIN.sample(32, 5, torch.Generator().manual_seed(7))
    times = [1.0, 0.95, 0.6, 0.3, 0.05]  # σ̄(0.95) = 10.9: mixed
    plain, reach = (PathLattice(model, x0, times, "tau", seed=8, objective="girsanov", weight=w, rule="euler")
                    for w in ("none", "reach"))
    assert reach.read(2).log_context is not None and plain.read(2).log_context is None
    assert torch.allclose(reach.pair(2, 4), plain.pair(2, 4), rtol=1e-6, atol=1e-9)
    assert (reach.step_rule(2, 4) <= plain.step_rule(2, 4) + 1e-12).all()
    assert float(reach.step_rule(0, 1).mean()) < 0.1 * float(plain.step_rule(0, 1).mean())  # from t = 1: forgotten
    with pytest.raises(ValueError, match="step rule is none"):
        PathLattice(model, x0, times, "tau", seed=8, objective="girsanov", weight="reach", rule="none")


def test_denoiser_coarse_path_on_absorbing_kernels_is_the_destination_objective():
    """Under an absorbing kernel the frozen denoiser carried to t2 has the exact total rate of a masked token, so
    Girsanov against it is Λ2·KL(π2 ‖ π1): the destination objective (both with exact oracle rates)."""
    model = _oracle("absorbing", "geometric")
    x0 = CHAIN.sample(32, 5, torch.Generator().manual_seed(3))
    lat = PathLattice(model, x0, [0.9, 0.5], "tau", seed=4, objective="destination")
    c, fine = lat.read(0), lat.read(1)
    from models.protocol import ModelOutput
    out = ModelOutput("score", fine.log_ratio)
    den = klub_terms(model.process, c, out, fine.x, fine.t, "girsanov", "denoiser")
    dest = klub_terms(model.process, c, out, fine.x, fine.t, "destination", "start")
    assert float(dest.abs().max()) > 1e-3
    assert torch.allclose(den, dest, rtol=1e-4, atol=1e-9)


def test_denoiser_coarse_path_of_a_lone_token_is_exact():
    """With one token there is no context to freeze: the frozen-denoiser path is the process, the integrand 0."""
    model = _oracle("uniform")
    x0 = CHAIN.sample(64, 1, torch.Generator().manual_seed(5))
    lat = PathLattice(model, x0, [1.0, 0.6, 0.2], "tau", seed=6, objective="girsanov", coarse_state="denoiser")
    assert lat.pair(0, 2).abs().max() < 1e-4
    cur = PathLattice(model, x0, [1.0, 0.6, 0.2], "tau", seed=6, objective="girsanov", coarse_state="current")
    assert cur.pair(0, 2).mean() > 1e-2  # the frozen-time path mistimes even a lone token


def test_context_posterior_against_enumeration():
    """p(x0_l | x_t,−l) from the oracle's denoiser equals the sum over every x_0 with token l left out of the
    likelihood, and carrying it gives the same marginal as expm(−ΔσQ)ᵀ r where both exist (uniform kernel)."""
    model = _oracle("uniform")
    proc, chain = model.process, CHAIN.mixed(1e-3)
    x, t = torch.tensor([[1, 2, 2]]), torch.tensor([0.45], dtype=F64)
    post = context_posterior(model(x, t).values, x, t, proc)
    Pt = proc.kernel.transition(proc.sigma(t))[0]
    want = torch.zeros(3, 3, dtype=F64)
    for seq in itertools.product(range(3), repeat=3):
        p = float(chain.log_prob(torch.tensor([seq])).exp())
        for l in range(3):
            want[l, seq[l]] += p * float(torch.prod(torch.stack([Pt[seq[j], x[0, j]] for j in range(3) if j != l])))
    want /= want.sum(-1, keepdim=True)
    assert torch.allclose(post[0], want, atol=1e-9)
    ratio = _read(model, x, 0.45).log_ratio.to(F64).exp()
    s = torch.tensor([0.2], dtype=F64)
    by_context, by_ratio = carried(proc, ratio, post, t, s), carried(proc, ratio, None, t, s)
    assert torch.allclose(by_context / by_context.sum(-1, keepdim=True), by_ratio / by_ratio.sum(-1, keepdim=True),
                          atol=1e-9)


@pytest.mark.parametrize("rule,t,s", [("euler", 0.6, 0.45), ("tau_leaping", 0.6, 0.45), ("tau_leaping", 0.95, 0.5)])
def test_ordinal_step_law_is_the_samplers_own(rule, t, s):
    """Under the ordinal kernel the step term's q matches the sampler's frequencies (τ-leaping: summed Poisson moves,
    clamped; the last case makes about 20 jumps per token, so the clamps carry mass), and the term needs the context
    posterior: a score model's read is refused with a message naming it."""
    model = _oracle("gaussian", "geometric")
    x = torch.tensor([[2, 0, 1]]).expand(20000, 3).contiguous()
    c = coarse_read(model, x[:1], torch.tensor([t], dtype=F64), 8)
    q, P = _step_law(model.process, c.log_ratio.to(F64).exp(), x[:1], c.t, torch.tensor([s], dtype=F64), rule,
                     c.context())
    g = torch.Generator().manual_seed(0)
    y = euler_step(model, x, t, s, g) if rule == "euler" else tau_leaping_step(model, x, t, s, g)
    assert torch.allclose(torch.nn.functional.one_hot(y, 3).to(F64).mean(0), q[0], atol=0.015)
    assert float(step_terms(model.process, c, torch.tensor([s], dtype=F64), rule)) > 0
    with pytest.raises(ValueError, match="gives scores"):
        step_terms(model.process, Coarse(c.x, c.t, c.log_ratio), torch.tensor([s], dtype=F64), rule)


def test_ordinal_leap_law_against_convolution():
    """The FFT law of x + Σ_d d·N_d, clamped, against the law built by convolving each move's Poisson counts
    (truncated far in the tail) on 5 states, with a drift large enough that the clamps and the centring matter."""
    from scipy.stats import poisson
    from jys.klub import _ordinal_leap_law
    S = 5
    lam = torch.tensor([[[0.0, 3.0, 0.5, 0.0, 9.0], [0.2, 0.0, 0.1, 0.0, 0.0]]], dtype=F64)  # rates to each state
    x = torch.tensor([[1, 1]])
    q = _ordinal_leap_law(lam, x)
    for l in range(2):
        law = {0: 1.0}
        for y in range(S):
            d, rate = y - int(x[0, l]), float(lam[0, l, y])
            if rate == 0 or d == 0:
                continue
            pn = poisson.pmf(range(80), rate)
            merged: dict = {}
            for k, v in law.items():
                for n in range(80):
                    merged[k + n * d] = merged.get(k + n * d, 0.0) + v * pn[n]
            law = merged
        want = torch.zeros(S, dtype=F64)
        for k, v in law.items():
            want[min(max(int(x[0, l]) + k, 0), S - 1)] += v
        assert torch.allclose(q[0, l], want / want.sum(), atol=1e-9), (q[0, l], want)


@pytest.mark.parametrize("kernel", ["uniform", "gaussian"])
def test_marginal_step_laws_against_enumeration(kernel):
    """_marginal_step_laws: Σ_x w(x) q(· | x) and Σ_x w(x) P(· | x) for each token, w(x) = p(x_{t,l} = x | x_{t,−l}),
    by enumerating every x_0 of the chain: the exact law is p(x_{s,l} | x_{t,−l}) = Σ_x0 p(x0 | x_{t,−l}) P_s[x0_l, ·],
    and q(· | x) is Euler's step from the sequence with token l set to x, its rates from that sequence's exact
    scores p_t(x with l → y) / p_t(x), p_t enumerated too."""
    from jys.klub import _marginal_step_laws
    model = _oracle(kernel)
    proc, chain = model.process, CHAIN.mixed(1e-3)
    x = torch.tensor([[2, 0, 1]])
    t, s = 0.7, 0.3
    tv, sv = torch.tensor([t], dtype=F64), torch.tensor([s], dtype=F64)
    c = coarse_read(model, x, tv, 8, context=True)
    q_bar, P_bar = _marginal_step_laws(proc, c.context(), tv, sv, "euler")
    Pt, Ps = (proc.kernel.transition(proc.sigma(torch.tensor([v], dtype=F64)))[0] for v in (t, s))
    seqs = list(itertools.product(range(3), repeat=3))
    prior = {seq: float(chain.log_prob(torch.tensor([seq])).exp()) for seq in seqs}

    def p_t(z):  # the chain's marginal at t of the sequence z
        return sum(prior[seq] * float(torch.prod(Pt[list(seq), list(z)])) for seq in seqs)

    rate = float(proc.sigma_rate(tv)[0])
    Q = proc.kernel.rate_matrix()  # Q[y, x] = the forward rate y → x
    for l in range(3):
        want_P, want_q, w = torch.zeros(3, dtype=F64), torch.zeros(3, dtype=F64), torch.zeros(3, dtype=F64)
        for own in range(3):
            z = x[0].tolist()
            z[l] = own
            w[own] = p_t(z)
            lam = torch.zeros(3, dtype=F64)
            for y in range(3):
                if y != own:
                    zy = list(z)
                    zy[l] = y
                    lam[y] = (t - s) * rate * float(Q[y, own]) * p_t(zy) / p_t(z)
            q = lam.clone()
            q[own] = max(0.0, 1.0 - float(lam.sum()))
            want_q += w[own] * q / q.sum()
        for seq in seqs:
            post = prior[seq] * float(torch.prod(torch.stack([Pt[seq[k], x[0, k]] for k in range(3) if k != l])))
            want_P += post * Ps[seq[l]]
        assert torch.allclose(P_bar[0, l] / P_bar[0, l].sum(), want_P / want_P.sum(), atol=1e-9)
        assert torch.allclose(q_bar[0, l], want_q / w.sum(), atol=1e-9)


def test_marginal_term_is_below_the_plain_term_on_average_and_forgives_a_step_from_the_prior():
    """Averaged over sequences of the process (the own value drawn from its law given the context) the marginal term
    is at most the plain one (convexity); from t = 1 under the uniform kernel, where Euler's clipped step costs
    much, it is ~0: the token's start was noise and nothing reads it after the step."""
    model = _oracle("uniform", "geometric")
    x0 = CHAIN.sample(512, 6, torch.Generator().manual_seed(1))
    for t, s in ((0.6, 0.3), (1.0, 0.9)):
        xt = model.process.sample(x0, torch.full((512,), t, dtype=F64), torch.Generator().manual_seed(2))
        c = coarse_read(model, xt, torch.full((512,), t, dtype=F64), 512, context=True)
        plain = step_terms(model.process, c, torch.tensor(s), "euler")
        marginal = step_terms(model.process, c, torch.tensor(s), "euler", marginal=True)
        assert (marginal >= -1e-12).all() and float(marginal.mean()) <= float(plain.mean())
        if t == 1.0:
            assert float(plain.min()) > 1.0 and float(marginal.max()) < 1e-3 * float(plain.min())
        else:
            assert float(marginal.mean()) > 1e-3  # an error in the law at s given the context still counts


@pytest.mark.parametrize("kernel,rule", [("uniform", "euler"), ("uniform", "tau_leaping"), ("uniform", "tau_leaping_last"),
                                         ("gaussian", "euler"), ("gaussian", "tau_leaping")])
def test_marginal_step_laws_at_once_equal_the_step_law_of_each_own_value(kernel, rule):
    """The [b, l, S, S] construction of the sampler's laws for every own value x (and, for τ-leaping under the
    ordinal kernel, the loop over x) gives Σ_x w(x) q(· | x) with q the sampler's own one-step law (_step_law) from a
    token at x with the exact ratios w(y) / w(x)."""
    from jys.klub import _marginal_step_laws
    model = _oracle(kernel, "geometric")
    x0 = CHAIN.sample(8, 4, torch.Generator().manual_seed(3))
    t, s = 0.5, 0.2
    tv = torch.full((8,), t, dtype=F64)
    xt = model.process.sample(x0, tv, torch.Generator().manual_seed(4))
    c = coarse_read(model, xt, tv, 8, context=True)
    sv = torch.full((8,), s, dtype=F64)
    q_bar, _ = _marginal_step_laws(model.process, c.context(), tv, sv, rule)
    w = carried(model.process, None, c.context(), tv, tv)
    w = w / w.sum(-1, keepdim=True)
    want = torch.zeros_like(w)
    for x in range(3):
        q, _ = _step_law(model.process, w / w[..., x:x + 1], torch.full((8, 4), x), tv, sv, rule, c.context())
        want += w[..., x:x + 1] * q
    assert torch.allclose(q_bar, want, atol=1e-12)
    if rule == "tau_leaping" and kernel == "uniform":  # the reject rule is not the last-jump one (under ordinal
        # kernels τ-leaping sums its moves, with no multi-jump rule): the test tells the two apart
        other, _ = _marginal_step_laws(model.process, c.context(), tv, sv, "tau_leaping_last")
        assert float((other - q_bar).abs().max()) > 1e-4
    assert float((q_bar - c.context() @ model.process.kernel.transition(model.process.sigma(sv))).abs().max()) > 1e-3


def test_marginal_term_refuses_what_it_cannot_compute():
    model = _oracle("uniform", "geometric")
    x0 = CHAIN.sample(4, 3, torch.Generator().manual_seed(0))
    c = coarse_read(model, x0, torch.full((4,), 0.5, dtype=F64), 4, context=True)
    with pytest.raises(ValueError, match="not combined"):
        step_terms(model.process, c, torch.tensor(0.2), "euler", marginal=True, stay=True)
    with pytest.raises(ValueError, match="weight=marginal needs a model that gives a denoiser"):
        step_terms(model.process, Coarse(c.x, c.t, c.log_ratio), torch.tensor(0.2), "euler", marginal=True)
    ab = _oracle("absorbing")
    ca = coarse_read(ab, x0, torch.full((4,), 0.5, dtype=F64), 4)
    with pytest.raises(ValueError, match="non-absorbing"):
        step_terms(ab.process, ca, torch.tensor(0.2), "euler", marginal=True)
