"""The grid objective J (jys.lattice): hand computations, nesting, the DP against brute force, the survival weight."""
import itertools
import math

import pytest
import torch

from jys.klub import klub_terms
from jys.lattice import PathLattice, base_lattice, optimal_grids, survival
from models.chains import MarkovChain, countdown_chain
from models.oracle import OracleModel
from models.process import make_process

F64 = torch.float64


def _oracle(kernel: dict, noise: dict, chain: MarkovChain) -> OracleModel:
    process = make_process({"noise": noise, "kernel": {**kernel, "num_states": chain.num_states}})
    return OracleModel(chain, process, floor=1e-3)


def _tiny_uniform():
    chain = MarkovChain(torch.tensor([0.5, 0.3, 0.2]), torch.tensor([[0.1, 0.8, 0.1], [0.2, 0.2, 0.6], [0.7, 0.2, 0.1]]))
    return _oracle({"name": "uniform"}, {"name": "loglinear"}, chain), chain


def test_grid_value_is_the_trapezoid_of_the_pair_terms_by_hand():
    model, chain = _tiny_uniform()
    x0 = chain.sample(64, 5, torch.Generator().manual_seed(0))
    pts = [1.0, 0.8, 0.5, 0.3, 0.1, 1e-3]
    lat = PathLattice(model, x0, pts, "tau", seed=3, objective="girsanov")
    grid = [1.0, 0.5, 1e-3]
    v = lat.grid_value(grid)
    # D(1, 0.5): points 1, 0.8, 0.5; D(0.5, 1e-3): points 0.5, 0.3, 0.1, 1e-3; the integrand is 0 at the start
    d1 = (0.2 * (0 + lat.pair(0, 1)) / 2 + 0.3 * (lat.pair(0, 1) + lat.pair(0, 2)) / 2).mean()
    d2 = (0.2 * (0 + lat.pair(2, 3)) / 2 + 0.2 * (lat.pair(2, 3) + lat.pair(2, 4)) / 2
          + (0.1 - 1e-3) * (lat.pair(2, 4) + lat.pair(2, 5)) / 2).mean()
    assert v.terms == pytest.approx([float(d1), float(d2)], rel=1e-12)
    assert v.value == pytest.approx(sum(v.terms), rel=1e-12)
    assert v.se > 0
    # the table's D agrees with grid_value's intervals
    D = lat.table()
    assert float(D[0, 2]) == pytest.approx(v.terms[0], rel=1e-12) and float(D[2, 5]) == pytest.approx(v.terms[1], rel=1e-12)


def test_grid_value_released_keeps_its_value_and_drops_the_reads_behind_it():
    """release=True (one grid per lattice, python -m jys evaluate): the same J to the last bit, and the lattice keeps
    no read before the grid's last step; without it every point read stays (later grids reuse them)."""
    model, chain = _tiny_uniform()
    x0 = chain.sample(16, 5, torch.Generator().manual_seed(2))
    pts = [1.0, 0.8, 0.5, 0.3, 0.1, 1e-3]
    kept = PathLattice(model, x0, pts, "tau", seed=3, objective="girsanov")
    released = PathLattice(model, x0, pts, "tau", seed=3, objective="girsanov")
    grid = [1.0, 0.5, 0.1, 1e-3]
    a, b = kept.grid_value(grid), released.grid_value(grid, release=True)
    assert (a.value, a.se, a.terms) == (b.value, b.se, b.terms)
    assert set(kept.reads) == set(range(len(pts))) and set(released.reads) <= {5}
    assert not released.pairs and kept.pairs
    assert released.calls == kept.calls  # no read dropped before its last use (it would be read again)


def test_pair_term_is_the_klub_integrand_of_the_forward_pair():
    """pair(p, q) is klub_terms on the lattice's own states; its one-point rectangle (t_q − t_r)·E pair is the
    hierarchical search's KLUB for the same states (here checked against klub_terms on draw_pair's states)."""
    model, chain = _tiny_uniform()
    x0 = chain.sample(32, 4, torch.Generator().manual_seed(1))
    lat = PathLattice(model, x0, [1.0, 0.6, 0.2], "tau", seed=0, objective="girsanov")
    c = lat.read(0)
    fine = model(lat.x[1], lat.t[1])
    direct = klub_terms(model.process, c, fine, lat.x[1], lat.t[1], "girsanov")
    assert torch.allclose(lat.pair(0, 1), direct, rtol=1e-5)  # float32 storage of the fine log ratios
    assert (lat.pair(0, 1) >= -1e-12).all()  # a KL integrand


def test_finer_nested_grid_scores_lower():
    model, chain = _tiny_uniform()
    x0 = chain.sample(256, 6, torch.Generator().manual_seed(2))
    pts = base_lattice(12, 1e-3)
    lat = PathLattice(model, x0, pts, "tau", seed=0, objective="girsanov")
    coarse = [pts[0], pts[len(pts) // 2], pts[-1]]
    fine = sorted(set(coarse) | {pts[len(pts) // 4], pts[3 * len(pts) // 4]}, reverse=True)
    assert lat.grid_value(fine).value < lat.grid_value(coarse).value
    assert lat.grid_value(pts).value < lat.grid_value(fine).value


def test_dp_optimum_equals_brute_force_over_all_grids():
    model, chain = _tiny_uniform()
    x0 = chain.sample(64, 5, torch.Generator().manual_seed(4))
    pts = [1.0, 0.9, 0.7, 0.5, 0.35, 0.2, 0.1, 1e-3]
    lat = PathLattice(model, x0, pts, "tau", seed=0, objective="girsanov")
    D = lat.table()
    best = optimal_grids(D, 5)
    P = len(pts)
    for steps in range(1, 6):
        brute = min((sum(float(D[a, b]) for a, b in zip((0, *inner), (*inner, P - 1))), (0, *inner, P - 1))
                    for inner in itertools.combinations(range(1, P - 1), steps - 1))
        assert best[steps][1] == pytest.approx(brute[0], rel=1e-12)
        assert tuple(best[steps][0]) == brute[1]
        assert lat.grid_value([pts[i] for i in best[steps][0]]).value == pytest.approx(best[steps][1], rel=1e-12)


def test_count_family_lattice_nests_masks_and_times():
    chain = countdown_chain(4)
    model = _oracle({"name": "absorbing"}, {"name": "loglinear"}, chain)
    x0 = chain.sample(16, 8, torch.Generator().manual_seed(0))
    lat = PathLattice(model, x0, [0, 2, 5, 8], "count", seed=0, objective="girsanov")
    mask = model.process.kernel.mask
    unmasked = (lat.x != mask).sum(-1)  # [P, M]
    assert unmasked.tolist() == [[k] * 16 for k in (0, 2, 5, 8)]
    assert ((lat.x[1] != mask) <= (lat.x[2] != mask)).all()  # nested
    assert (lat.t[:-1] >= lat.t[1:]).all() and (lat.t[-1] == 0).all()
    assert lat.grid_value([0, 5, 8]).value > lat.grid_value([0, 2, 5, 8]).value > 0


def test_the_count_lattice_never_reads_the_model_at_count_L():
    """Count L (nothing masked) sits at t = 0, where a trained SEDD's output shift −log(e^σ̄ − 1) is singular: a model
    that returns NaN there gives the same finite table as the oracle (the last point's integrand is 0)."""
    from models.protocol import ModelOutput

    chain = countdown_chain(4)
    model = _oracle({"name": "absorbing"}, {"name": "loglinear"}, chain)

    class SingularAtZero:
        process = model.process

        def __call__(self, x, t):
            out = model(x, t)
            return ModelOutput(out.kind, torch.where((t == 0).reshape(-1, 1, 1), math.nan, out.values))

    x0 = chain.sample(16, 8, torch.Generator().manual_seed(0))
    points = [0, 2, 5, 8]
    exact = PathLattice(model, x0, points, "count", seed=0, objective="destination").table()
    singular = PathLattice(SingularAtZero(), x0, points, "count", seed=0, objective="destination").table()
    assert torch.isfinite(singular[0, 3]) and torch.equal(singular, exact)


def test_survival_closed_forms():
    t = torch.tensor([0.05, 0.3, 0.7, 1.0], dtype=F64)
    absorbing = make_process({"noise": {"name": "loglinear"}, "kernel": {"name": "absorbing", "num_states": 5}})
    assert survival(absorbing, t, torch.full((5,), 0.2)).tolist() == [1.0] * 4
    uni = make_process({"noise": {"name": "geometric"}, "kernel": {"name": "uniform", "num_states": 6}})
    w = survival(uni, t, torch.full((6,), 1 / 6))
    assert torch.allclose(w, torch.exp(-uni.sigma(t)), rtol=1e-10)


def test_survival_gaussian_against_bayes_by_loops():
    proc = make_process({"noise": {"name": "exponential", "time_base": 3.0, "time_exponential": 100.0},
                         "kernel": {"name": "gaussian", "num_states": 5, "rate_sigma": 1.5, "Q_sigma": 8.0}})
    pi0 = torch.tensor([0.1, 0.3, 0.2, 0.25, 0.15], dtype=F64)
    for t in (0.05, 0.2, 0.6):
        P = proc.transition(torch.tensor([t], dtype=F64))[0]
        p_y = [sum(pi0[a] * P[a, y] for a in range(5)) for y in range(5)]
        post = [[pi0[a] * P[a, y] / p_y[y] for a in range(5)] for y in range(5)]
        num = den = 0.0
        for y in range(5):
            for z in range(5):
                if y != z:
                    tv = 0.5 * sum(abs(post[y][a] - post[z][a]) for a in range(5))
                    num += p_y[y] * p_y[z] * tv
                    den += p_y[y] * p_y[z]
        assert float(survival(proc, torch.tensor([t], dtype=F64), pi0)[0]) == pytest.approx(float(num / den), rel=1e-9)
    w = survival(proc, torch.tensor([0.05, 0.2, 0.6, 1.0]), pi0)
    assert (w[:-1] >= w[1:] - 1e-15).all() and float(w[0]) > 0.1 and float(w[-1]) < 1e-3  # falls as the kernel mixes


def test_bad_input():
    model, chain = _tiny_uniform()
    x0 = chain.sample(4, 3, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="jys.weight"):
        PathLattice(model, x0, [1.0, 0.1], "tau", 0, "girsanov", weight="bogus")
    with pytest.raises(ValueError, match="decrease"):
        PathLattice(model, x0, [0.1, 1.0], "tau", 0, "girsanov")
    lat = PathLattice(model, x0, [1.0, 0.5, 0.1], "tau", 0, "girsanov")
    with pytest.raises(ValueError, match="not lattice points"):
        lat.grid_value([1.0, 0.3, 0.1])


def test_destination_objective_is_girsanov_less_the_timing_part():
    """Girsanov's integrand splits per position into [Λ2 log(Λ2/Λ1) − Λ2 + Λ1] + Λ2 KL(π2 ‖ π1); `destination`
    keeps the second: check the difference against the first, from the oracle's reverse rates by hand."""
    from models.protocol import reverse_rates
    chain = countdown_chain(5)
    model = _oracle({"name": "absorbing"}, {"name": "loglinear"}, chain)
    x0 = chain.sample(64, 6, torch.Generator().manual_seed(5))
    pts = [0.9, 0.6, 0.3]
    g = PathLattice(model, x0, pts, "tau", seed=1, objective="girsanov")
    d = PathLattice(model, x0, pts, "tau", seed=1, objective="destination")
    assert torch.equal(g.x, d.x)
    x1, x2, t1, t2 = g.x[0], g.x[2], g.t[0], g.t[2]
    R1 = reverse_rates(model(x1, t1), x1, t1, model.process)
    R2 = reverse_rates(model(x2, t2), x2, t2, model.process)
    L1, L2 = R1.sum(-1), R2.sum(-1)
    timing = torch.where(L2 > 0, L2 * torch.log(L2 / torch.where(L1 > 0, L1, 1.0)), 0.0) - L2 + L1
    assert torch.allclose(g.pair(0, 2) - d.pair(0, 2), timing.sum(-1), rtol=1e-5, atol=1e-8)
    assert (d.pair(0, 2) > 1e-6).any() and (d.pair(0, 2) >= -1e-10).all() and (timing >= -1e-10).all()


LATTICE = ["experiment.length=24", "experiment.data=null", "jys.search=lattice", "jys.lattice=12",
           "jys.lattice_samples=16"]


@pytest.mark.slow
def test_lattice_search_writes_the_dp_optimum_and_reuses_its_table(make_cfg):
    import json

    from pipeline.build import build_model
    from pipeline.evaluate import evaluate_schedule
    from pipeline.search import optimize_config
    cfg = make_cfg("experiment=count", "model=oracle", "sampler=euler", "nfe=3", "jys.objective=destination", "jys.end=eps", *LATTICE)
    model = build_model(cfg)  # the grid at ε (jys.end=eps): J's DP over nfe steps; the default's is test_schedule_end
    rec = json.loads(optimize_config(cfg, model).read_text())
    assert rec["label"] == "jys-destination-lattice-eps" and rec["search"] == "lattice" and len(rec["times"]) == 4
    table = json.loads(open(rec["state_file"]).read())
    D = torch.tensor([[math.inf if v is None else v for v in row] for row in table["D"]], dtype=F64)
    pts = table["key"]["points"]
    brute = min(float(D[0, i] + D[i, j] + D[j, len(pts) - 1])
                for i in range(1, len(pts) - 1) for j in range(i + 1, len(pts) - 1))
    assert rec["J"] == pytest.approx(brute, rel=1e-12)
    # another NFE on the same lattice reuses the table; J falls with more steps
    rec2 = json.loads(optimize_config(make_cfg("experiment=count", "model=oracle", "sampler=euler", "nfe=2",
                                        "jys.objective=destination", "jys.end=eps", *LATTICE), model).read_text())
    assert rec2["state_file"] == rec["state_file"] and rec2["J"] > rec["J"]
    # the evaluator scores the written schedule by the same J (its lattice: the base plus the grid's points)
    ev = json.loads(evaluate_schedule(make_cfg("experiment=count", "model=oracle", "sampler=euler", "nfe=3",
                                               "schedule=jys-destination-lattice-eps", "jys.objective=destination",
                                               "jys.end=eps", *LATTICE), model).read_text())
    assert ev["J"] == pytest.approx(rec["J"], rel=1e-9) and ev["J_se"] > 0
    uni = json.loads(evaluate_schedule(make_cfg("experiment=count", "model=oracle", "sampler=euler", "nfe=3",
                                                "schedule=uniform", "jys.objective=destination", "jys.end=eps", *LATTICE),
                                       model).read_text())
    assert uni["J"] > ev["J"]


def test_lattice_search_bad_input(make_cfg):
    from pipeline.search import optimize_config
    with pytest.raises(ValueError, match="jys.search"):
        optimize_config(make_cfg("experiment=count", "model=oracle", "nfe=3", "jys.search=golden", *LATTICE[:2]))
    with pytest.raises(ValueError, match="jys.lattice must be"):
        optimize_config(make_cfg("experiment=count", "model=oracle", "nfe=3", *LATTICE, "jys.lattice=1"))


def test_grids_scored_apart_meet_the_same_base_path_and_share_its_reads():
    """Two grids, each on the base lattice plus its own points: the base states agree (common random numbers), so
    reads shared through read_cache give the J of lattices that read everything themselves."""
    model, chain = _tiny_uniform()
    x0 = chain.sample(32, 5, torch.Generator().manual_seed(6))
    base = base_lattice(6, 1e-3)
    grids = [[1.0, 0.45, 1e-3], [1.0, 0.62, 0.2, 1e-3]]
    cache: dict = {}
    shared, alone = [], []
    for g in grids:
        pts = sorted(set(base) | set(g), reverse=True)
        a = PathLattice(model, x0, pts, "tau", seed=2, objective="girsanov", base_points=6, read_cache=cache)
        b = PathLattice(model, x0, pts, "tau", seed=2, objective="girsanov", base_points=6)
        assert all(torch.equal(a.x[a.index[t]], b.x[b.index[t]]) for t in base)
        shared.append(a.grid_value(g).value)
        alone.append(b.grid_value(g).value)
    first = PathLattice(model, x0, sorted(set(base) | set(grids[0]), reverse=True), "tau", seed=2, objective="girsanov",
                        base_points=6)
    second = PathLattice(model, x0, sorted(set(base) | set(grids[1]), reverse=True), "tau", seed=2, objective="girsanov",
                         base_points=6)
    assert all(torch.equal(first.x[first.index[t]], second.x[second.index[t]]) for t in base)
    assert shared == pytest.approx(alone, rel=1e-12)
    assert len(cache) > len(base)  # the grids' own points were read too


def test_table_with_a_span_limit_equals_the_full_table_within_it():
    """Within the span (and on the first row, the step from the prior, which may be as long as a grid likes)."""
    model, chain = _tiny_uniform()
    x0 = chain.sample(16, 4, torch.Generator().manual_seed(7))
    pts = base_lattice(6, 1e-3)
    lat = PathLattice(model, x0, pts, "tau", seed=0, objective="girsanov")
    full, short = lat.table(), lat.table(max_span=3)
    n = len(pts)
    near = torch.tensor([[0 < b - a <= 3 or (a == 0 and b > 0) for b in range(n)] for a in range(n)])  # the first row whole
    assert torch.equal(full[near], short[near]) and torch.isinf(short[~near]).all()


def _assert_suffix_dp_is_brute_force(lat, T, pts, max_steps):
    """The suffix DP on table T [3, P, P] (J = Σ_i T0 + T1 · Π_{j>i} T2): its grids score what it says, by hand and by
    the lattice's grid_value, and its minimum is brute force's over every grid of 1 … max_steps steps."""
    best = optimal_grids(T, max_steps)
    P = len(pts)

    def j_of(g):
        return sum(float(T[0, a, b]) + float(T[1, a, b]) * math.prod(float(T[2, c, d]) for c, d in zip(g[i + 1:], g[i + 2:]))
                   for i, (a, b) in enumerate(zip(g, g[1:])))

    for n in range(1, max_steps + 1):
        grids = [(0, *inner, P - 1) for inner in itertools.combinations(range(1, P - 1), n - 1)]
        brute = min(grids, key=j_of)
        assert best[n][1] == pytest.approx(j_of(best[n][0]), rel=1e-12)
        assert best[n][1] == pytest.approx(j_of(brute), rel=1e-9)
        assert lat.grid_value([pts[i] for i in best[n][0]]).value == pytest.approx(best[n][1], rel=1e-12)


def test_suffix_weight_discounts_each_step_term_by_the_later_keep_probabilities():
    """weight=suffix: J = Σ_i path_i + step_i · Π_{j>i} keep_j, by hand from the plain lattice's parts; its DP's
    grids score what it says, and on a tiny lattice its optimum is brute force's (the suffix rule is a heuristic in
    general; here it is exact, and the test keeps it so)."""
    model, chain = _tiny_uniform()
    x0 = chain.sample(64, 5, torch.Generator().manual_seed(4))
    pts = [1.0, 0.9, 0.7, 0.5, 0.35, 0.2, 0.1, 1e-3]
    plain = PathLattice(model, x0, pts, "tau", seed=0, objective="girsanov", coarse_state="denoiser", rule="euler")
    suffix = PathLattice(model, x0, pts, "tau", seed=0, objective="girsanov", coarse_state="denoiser", rule="euler",
                         weight="suffix")
    grid = [0, 2, 5, 7]
    steps = list(zip(grid, grid[1:]))
    rule = [plain.step_rule(a, b) for a, b in steps]
    path = [plain.interval(a, b) - r for (a, b), r in zip(steps, rule)]
    keep = [float(suffix.stay(a, b)) for a, b in steps]
    assert 0.0 < keep[1] < 1.0 and 0.0 < keep[2] < 1.0, keep  # (the first, long step may move every token)
    by_hand = sum(p + r * math.prod(keep[i + 1:]) for i, (p, r) in enumerate(zip(path, rule))).mean()
    v = suffix.grid_value([pts[i] for i in grid])
    assert v.value == pytest.approx(float(by_hand), rel=1e-12)
    assert v.value < plain.grid_value([pts[i] for i in grid]).value

    T = suffix.table()
    assert T.shape == (3, len(pts), len(pts))
    assert torch.allclose(T[0] + T[1], plain.table(), rtol=1e-12)  # its parts add up to the plain table
    _assert_suffix_dp_is_brute_force(suffix, T, pts, 5)


def test_suffix_weight_refuses_a_sampler_without_a_step_term():
    model, chain = _tiny_uniform()
    x0 = chain.sample(8, 5, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match="weight=suffix"):
        PathLattice(model, x0, [1.0, 0.5, 1e-3], "tau", seed=0, objective="girsanov", weight="suffix")


def test_mix_weight_charges_the_moved_tokens_the_term_image_in_x0():
    """weight=mix: J = Σ_i path_i + K_i · plain_i + (1 − K_i) · reach_i, K_i = Π_{j>i} keep_j, by hand from the plain
    and reach lattices' parts; between suffix's J and the plain one; its table's parts add up to the plain table
    where K = 1 and to reach's where K = 0; its DP's grids score what it says and match brute force here."""
    model, chain = _tiny_uniform()
    x0 = chain.sample(64, 5, torch.Generator().manual_seed(4))
    pts = [1.0, 0.9, 0.7, 0.5, 0.35, 0.2, 0.1, 1e-3]
    kw = dict(objective="girsanov", coarse_state="denoiser", rule="euler")
    plain = PathLattice(model, x0, pts, "tau", seed=0, **kw)
    reach = PathLattice(model, x0, pts, "tau", seed=0, weight="reach", **kw)
    suffix = PathLattice(model, x0, pts, "tau", seed=0, weight="suffix", **kw)
    mix = PathLattice(model, x0, pts, "tau", seed=0, weight="mix", **kw)
    grid = [0, 2, 5, 7]
    steps = list(zip(grid, grid[1:]))
    rule = [plain.step_rule(a, b) for a, b in steps]
    image = [reach.step_rule(a, b) for a, b in steps]
    # the path part from reach's lattice: it reads the context posterior as mix's does (the plain lattice does not,
    # and its carried path agrees only to the oracle's floor-mixed rounding)
    path = [reach.interval(a, b) - i for (a, b), i in zip(steps, image)]
    keep = [float(mix.stay(a, b)) for a, b in steps]
    assert all(bool((i <= r + 1e-12).all()) for i, r in zip(image, rule))  # the image never exceeds the plain term
    assert any(float((r - i).mean()) > 1e-6 for i, r in zip(image, rule))  # and the test can see the difference
    K = [math.prod(keep[i + 1:]) for i in range(len(steps))]
    by_hand = sum(p + k * r + (1 - k) * i for p, r, i, k in zip(path, rule, image, K)).mean()
    g = [pts[i] for i in grid]
    v = mix.grid_value(g)
    assert v.value == pytest.approx(float(by_hand), rel=1e-8)  # reads with and without the context: 2e-10 apart
    assert suffix.grid_value(g).value <= v.value <= plain.grid_value(g).value

    T = mix.table()
    assert T.shape == (3, len(pts), len(pts))
    finite = torch.isfinite(T[0])
    assert torch.allclose((T[0] + T[1])[finite], plain.table()[finite], rtol=1e-8)  # K = 1: the plain term
    assert torch.allclose(T[0][finite], reach.table()[finite], rtol=1e-12)  # K = 0: reach's
    _assert_suffix_dp_is_brute_force(mix, T, pts, 5)
