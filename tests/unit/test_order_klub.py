"""J for samplers that reveal positions in a fixed order (jys.order): against the KL of the two reveal paths by
enumeration, and its DP against brute force; in the sampler's direction; scripts/order_j.py on the oracle."""
import importlib.util
import itertools
import json
import math

import numpy as np
import pytest
import scipy.stats
import torch

from conftest import ROOT
from jys.lattice import optimal_grids
from jys.order import order_table, order_terms, resolve_order
from models.chains import MarkovChain
from models.oracle import OracleModel
from models.process import make_process
from pipeline.build import build_model, compose_config
from pipeline.experiment import experiment_of
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


def _sampler_law(states, truth, order: list[int], counts: list[int]) -> torch.Tensor:
    """The fixed-order sampler's law over `states`: each step draws its slots' tokens independently given the revealed
    ones."""
    q = torch.ones(len(states), dtype=F64)
    for k, k2 in zip(counts, counts[1:]):
        given = order[:k]
        for j in range(k, k2):
            cond = _conditional(states, truth, given, order[j])
            q *= torch.stack([cond[tuple(s[given].tolist())][s[order[j]]] for s in states])
    return q


def _exact_kl(states, truth, order: list[int], counts: list[int]) -> float:
    """KL(data ‖ the sampler's law)."""
    return float((truth * (truth / _sampler_law(states, truth, order, counts)).log()).sum())


def test_order_objective_is_the_exact_kl_of_the_sampler_on_a_tiny_chain():
    model, states, truth = _setup()
    order = dilated_order(4)  # 0 2 | 1 3
    D, calls = order_terms(model, states, order, batch_size=32, weights=truth)  # each sequence by its probability
    assert calls == 4 * math.ceil(len(states) / 32)
    for counts in ([0, 2, 4], [0, 1, 4], [0, 3, 4], [0, 4], [0, 1, 2, 3, 4]):
        J = sum(float(D[a, b]) for a, b in zip(counts, counts[1:]))
        assert J == pytest.approx(_exact_kl(states, truth, order.tolist(), counts), rel=1e-8, abs=1e-12)
    assert float(D[0, 1]) == 0.0 and float(D[2, 3]) == 0.0  # one token per call: the refined path itself


def test_shuffled_orders_give_kgillespies_reveal_path_kl_in_expectation():
    """jys.order=shuffle: with every (sequence, permutation) pair weighted by p(x)/4!, J is the mean over uniformly
    random orders of the fixed-order KL; k-Gillespie's law is the mixture of the fixed-order laws over those orders
    (its draws against the mixture: chi-square), so J bounds KL(data ‖ k-Gillespie) from above, by convexity."""
    from samplers.loop import run_sampler
    from samplers.schedules import times_from_counts

    model, states, truth = _setup()
    perms = [list(p) for p in itertools.permutations(range(4))]
    x0 = states.repeat_interleave(len(perms), 0)
    order = torch.tensor(perms).repeat(len(states), 1)  # row i·24 + j: sequence i, permutation j
    D, _ = order_terms(model, x0, order, batch_size=300, weights=truth.repeat_interleave(len(perms)) / len(perms))
    for counts in ([0, 2, 4], [0, 1, 3, 4], [0, 4]):
        J = sum(float(D[a, b]) for a, b in zip(counts, counts[1:]))
        laws = [_sampler_law(states, truth, p, counts) for p in perms]
        assert J == pytest.approx(sum(float((truth * (truth / q).log()).sum()) for q in laws) / len(perms), rel=1e-8)
        mixture = torch.stack(laws).mean(0)
        gap = J - float((truth * (truth / mixture).log()).sum())
        assert gap > 1e-4 if len(counts) > 2 else gap == pytest.approx(0, abs=1e-12)  # one step: every order alike
    # k-Gillespie on counts 0, 2, 4 draws from the mixture
    n = 20000
    times = times_from_counts([0, 2, 4], model.process, 4)
    draws = run_sampler(model, "kgillespie", times, n, 4, torch.Generator().manual_seed(3), batch_size=n,
                        progress=False).samples
    seen = torch.zeros(len(states)).index_add_(0, (draws * torch.tensor([27, 9, 3, 1])).sum(1), torch.ones(n))
    mixture = torch.stack([_sampler_law(states, truth, p, [0, 2, 4]) for p in perms]).mean(0)
    assert scipy.stats.chisquare(seen.numpy(), (mixture / mixture.sum() * n).numpy()).pvalue > 1e-3


def test_order_dp_equals_brute_force_over_count_grids():
    model, states, truth = _setup()
    x0 = model.chain.sample(64, 4, torch.Generator().manual_seed(0))
    D, counts, _ = order_table(model, x0, dilated_order(4))
    assert counts == [0, 1, 2, 3, 4] and D.shape == (5, 5) and math.isinf(float(D[1, 0]))
    best = optimal_grids(D, 4)
    for n in (1, 2, 3, 4):
        brute = min(((0, *inner, 4) for inner in itertools.combinations(range(1, 4), n - 1)),
                    key=lambda g: sum(float(D[a, b]) for a, b in zip(g, g[1:])))
        assert best[n][1] == pytest.approx(sum(float(D[a, b]) for a, b in zip(brute, brute[1:])), abs=1e-12)


def test_order_reads_each_count_at_the_time_the_sampler_reads_it():
    """The absorbing oracle's denoiser does not depend on t, so the exactness test cannot see the read times: a model
    that records them must be read at count k's grid time, times_from_counts(k) (where dus_step reads), on a long
    sequence whose first reachable count is above 1 (those below read at its time)."""
    from samplers.schedules import first_count, times_from_counts

    base, _, _ = _setup()
    process = make_process({"noise": {"name": "loglinear", "eps": 0.01}, "kernel": {"name": "absorbing", "num_states": 3}})
    model = OracleModel(base.data_chain, process, floor=1e-3)
    L = 200  # L·e^{−σ̄(1)} = 2: count 1 is reached at no t < 1
    seen = {}

    class Recording:
        process = model.process

        def __call__(self, x, t):
            seen[int((x[0] != model.process.kernel.mask).sum())] = float(t[0])
            return model(x, t)

    x0 = model.chain.sample(2, L, torch.Generator().manual_seed(0))
    order_terms(Recording(), x0, dilated_order(L), batch_size=2, max_bytes=2**30)
    low = first_count(model.process, L)
    assert low > 1 and sorted(seen) == list(range(L))
    reachable = [0] + list(range(low, L))
    assert [seen[k] for k in reachable] == pytest.approx(times_from_counts(reachable, model.process, L).tolist(), rel=1e-12)
    assert all(seen[k] == seen[low] for k in range(1, low))


def test_order_setting_resolves_per_sampler_and_refuses_unknown_names():
    assert resolve_order("auto", "dus") == "dus" and resolve_order("auto", "kgillespie") == "random"
    assert resolve_order("random", "dus") == "random" and resolve_order("shuffle", "kgillespie") == "shuffle"
    with pytest.raises(ValueError, match="dus reveals other positions"):
        resolve_order("shuffle", "dus")
    with pytest.raises(ValueError, match="unknown jys.order 'spiral'"):
        resolve_order("spiral", "dus")
    with pytest.raises(ValueError, match="kgillespie reveals other positions"):
        resolve_order("dus", "kgillespie")
    model, states, _ = _setup()
    with pytest.raises(ValueError, match="permutation of the 4 positions"):
        order_terms(model, states[:4], torch.tensor([0, 0, 1, 2]))
    with pytest.raises(ValueError, match=r"one per sequence \[4, 4\]\), got shape \[3, 4\]"):
        order_terms(model, states[:4], torch.stack([torch.arange(4)] * 3))
    for wrong in (torch.arange(3), torch.tensor(2)):  # a short order, a 0-d one: the same clear error
        with pytest.raises(ValueError, match="permutation of the 4 positions"):
            order_terms(model, states[:4], wrong)
    with pytest.raises(ValueError, match="above jys.max_bytes"):
        order_terms(model, states, dilated_order(4), max_bytes=1000)


def _coarse_step_kl(states, truth, order: list[int], k: int, k2: int) -> float:
    """E_{X_k ~ data} KL(coarse ‖ refined) of the step k → k2's tokens, by enumeration: the coarse step draws slots
    k … k2 − 1 each from p(x_{o_j} | X_k), the refined path one per call given the slots before."""
    given = order[:k]
    total = 0.0
    for key in set(tuple(s[given].tolist()) for s in states):
        rows = (states[:, given] == torch.tensor(key)).all(1) if given else torch.ones(len(states), dtype=torch.bool)
        weight = float(truth[rows].sum())
        sub, w = states[rows], truth[rows] / truth[rows].sum()  # the law given X_k = key
        for ys in itertools.product(range(3), repeat=k2 - k):
            coarse = refined = 1.0
            for i, y in enumerate(ys):
                coarse *= float(_conditional(sub, w, [], order[k + i])[()][y])
                before = order[k:k + i]
                refined *= float(_conditional(sub, w, before, order[k + i])[tuple(ys[:i])][y]) if before else \
                    float(_conditional(sub, w, [], order[k + i])[()][y])
            if coarse > 0:
                total += weight * coarse * math.log(coarse / refined)
    return total


def test_sampler_direction_terms_are_the_coarse_steps_kl_on_a_tiny_chain():
    """D_s(k, k′) draws one coarse token set per sequence: with every state repeated R times (weight p(x)/R), its mean
    is within 4 standard errors of the enumerated KL(coarse ‖ refined), and one token per call costs 0."""
    from jys.order import sampler_order_terms

    model, states, truth = _setup()
    R = 300
    x0, w = states.repeat_interleave(R, 0), truth.repeat_interleave(R) / R
    order = dilated_order(4)  # 0 2 | 1 3
    per, reads = sampler_order_terms(model, x0, order, seed=5, batch_size=4096, per_sequence=True)
    assert reads == sum(math.ceil(len(x0) / 4096) + math.ceil((4 - k - 1) * len(x0) / 4096) for k in range(4))
    D = (w[:, None, None] * per).sum(0)
    for k, k2 in ((0, 2), (0, 4), (1, 4), (1, 3), (0, 3)):
        exact = _coarse_step_kl(states, truth, order.tolist(), k, k2)
        se = float((w ** 2 * (per[:, k, k2] - D[k, k2]) ** 2).sum().sqrt())  # the weighted mean's
        assert exact > 1e-3 and abs(float(D[k, k2]) - exact) < 4 * se, (k, k2, float(D[k, k2]), exact, se)
    assert float(per[:, 0, 1].abs().max()) == 0.0 and float(per[:, 3, 4].abs().max()) == 0.0
    # positions 1 and 3 given 0 and 2: independent under a first-order chain, so revealing them together is free
    assert _coarse_step_kl(states, truth, order.tolist(), 2, 4) == pytest.approx(0, abs=1e-12)
    assert float(per[:, 2, 4].abs().max()) < 1e-12
    # the weighted mean it returns without per_sequence, and a start's end cuts its row there
    mean, _ = sampler_order_terms(model, x0, order, seed=5, batch_size=4096, weights=w)
    assert torch.allclose(mean, D, rtol=1e-12, atol=1e-15)
    short, _ = sampler_order_terms(model, x0, order, starts=[(0, 3)], seed=5, batch_size=4096, weights=w)
    assert float(short[0, 3]) == pytest.approx(float(D[0, 3]), rel=1e-12) and float(short[0, 4]) == 0.0
    with pytest.raises(ValueError, match=r"0 <= k < end <= 4, got \(2, 2\)"):
        sampler_order_terms(model, x0[:4], order, starts=[(2, 2)])
    with pytest.raises(ValueError, match="above max_bytes"):
        sampler_order_terms(model, x0, order, max_bytes=1000)


def test_sampler_direction_reads_each_context_at_its_counts_time():
    """The oracle's conditionals do not depend on t: a model that records the reads must see each context read at
    the time of its unmasked count (the coarse read at k, each refined one at k + c + 1), where dus_step reads."""
    from jys.order import sampler_order_terms
    from samplers.unmasking import count_times

    base, _, _ = _setup()
    process = make_process({"noise": {"name": "loglinear", "eps": 0.01},
                            "kernel": {"name": "absorbing", "num_states": 3}})
    model = OracleModel(base.data_chain, process, floor=1e-3)
    L = 200  # counts below first_count read at its time
    seen = []

    class Recording:
        process = model.process

        def __call__(self, x, t):
            seen.extend(zip((x != model.process.kernel.mask).sum(1).tolist(), t.tolist()))
            return model(x, t)

    x0 = model.chain.sample(3, L, torch.Generator().manual_seed(0))
    sampler_order_terms(Recording(), x0, dilated_order(L), starts=[(0, 4), (1, 3), (150, 156)], batch_size=2)
    counts = torch.tensor([c for c, _ in seen])
    assert sorted(set(counts.tolist())) == [0, 1, 2, 3, 150, 151, 152, 153, 154, 155]
    assert torch.tensor([t for _, t in seen], dtype=F64).tolist() == \
        pytest.approx(count_times(counts, model.process, L).tolist(), rel=1e-12)


def order_j_script():
    spec = importlib.util.spec_from_file_location("order_j", ROOT / "scripts" / "order_j.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_order_j_on_the_models_law_is_the_exact_kl(tmp_path):
    """Read on the model's own law (DUS revealing one token per call: the data's law under the oracle), each grid's
    mean J is the enumerated KL of its sampler's output from the data, and in the sampler's direction the enumerated
    sum of its steps' KL(coarse ‖ refined), within 4 standard errors; the paired differences are per sequence."""
    chain = tmp_path / "chain.npz"
    np.savez(chain, initial=np.array([0.5, 0.3, 0.2]),
             transition=np.array([[0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.7, 0.2, 0.1]]))
    over = ["experiment=chain", "model=oracle", f"oracle.chain_file={chain}", "experiment.length=4"]
    out = tmp_path / "order-j.json"
    order_j_script().main([*over, "--grids", "two=counts:0,2,4", "one=counts:0,4", "counts:0,1,3,4",
                           "--states", "model", "--num", "4000", "--batch-size", "4000", "--out", str(out)])
    record = json.loads(out.read_text())
    cfg = compose_config(over)
    model = build_model(cfg, experiment_of(cfg))
    states = torch.tensor(list(itertools.product(range(3), repeat=4)), dtype=torch.long)
    truth = model.chain.log_prob(states).exp()
    truth = truth / truth.sum()
    order = dilated_order(4).tolist()
    assert list(record["grids"]) == ["two", "one", "counts:0,1,3,4"]
    for name, row in record["grids"].items():
        counts = row["counts"]
        exact = _exact_kl(states, truth, order, counts)
        reverse = sum(_coarse_step_kl(states, truth, order, a, b) for a, b in zip(counts, counts[1:]))
        assert exact > 0.01 and abs(row["J_refined_mean"] - exact) < 4 * row["J_refined_se"], (name, row, exact)
        assert abs(row["J_sampler_mean"] - reverse) < 4 * row["J_sampler_se"], (name, row, reverse)
        assert abs(row["J_refined_mean"] - np.mean(row["J_refined"])) < 1e-12 and len(row["J_refined"]) == 4000
        diff = np.array(row["J_sampler"]) - np.array(record["grids"]["two"]["J_sampler"])
        assert abs(row["J_sampler_diff"] - diff.mean()) < 1e-12
        assert abs(sum(row["steps_refined"]) - row["J_refined_mean"]) < 1e-9
    # --states own: each grid read on its own output, the sampler's direction is KL(grid output ‖ data)
    from samplers.loop import run_sampler
    from samplers.schedules import times_from_counts

    files = []
    for name, counts in (("two", [0, 2, 4]), ("steps", [0, 1, 3, 4])):
        draws = run_sampler(model, "dus", times_from_counts(counts, model.process, 4), 4000, 4,
                            torch.Generator().manual_seed(7), batch_size=4000, progress=False).samples
        np.savez(tmp_path / f"{name}.npz", samples=draws.numpy(), sampler="dus", prefix=0,
                 times=times_from_counts(counts, model.process, 4).numpy(), model_identity=json.dumps(model.identity()))
        files.append(f"{name}={tmp_path / f'{name}.npz'}")
    own = tmp_path / "own.json"
    order_j_script().main([*over, "--grids", "two=counts:0,2,4", "steps=counts:0,1,3,4", "--states", "own",
                           "--samples", *files, "--num", "4000", "--batch-size", "4000", "--out", str(own)])
    assert json.loads(own.read_text())["grids"]["two"]["J_sampler_diff_se"] == 0.0  # the first grid against itself
    for name, row in json.loads(own.read_text())["grids"].items():
        q = _sampler_law(states, truth, order, row["counts"])
        exact = float((q * (q / truth).log()).sum())
        assert exact > 0.01 and abs(row["J_sampler_mean"] - exact) < 4 * row["J_sampler_se"], (name, row, exact)
    with pytest.raises(ValueError, match=r"not DUS on the counts \[0, 1, 3, 4\]"):  # two's samples under steps' name
        order_j_script().main([*over, "--grids", "steps=counts:0,1,3,4", "--states", "own", "--samples",
                               f"steps={tmp_path / 'two.npz'}", "--num", "10"])
    with pytest.raises(ValueError, match="--samples goes with --states own"):
        order_j_script().main([*over, "--grids", "two=counts:0,2,4", "--samples", files[0], "--num", "10"])
    with pytest.raises(ValueError, match=r"--samples must name \['steps', 'two'\]"):
        order_j_script().main([*over, "--grids", "two=counts:0,2,4", "steps=counts:0,1,3,4", "--states", "own",
                               "--samples", files[0], "--num", "10"])
    with pytest.raises(ValueError, match="--seed must be >= 1"):
        order_j_script().main([*over, "--grids", "geometric:2", "--seed", "0"])
