"""J read on the sampler's own states (jys.onpolicy) against enumeration where tokens are independent."""
import torch

from jys.klub import _step_law, coarse_read
from jys.onpolicy import OnPolicyJ
from models.chains import MarkovChain
from models.oracle import OracleModel
from models.process import make_process

F64 = torch.float64
INIT = torch.tensor([0.6, 0.3, 0.1])
GRID = [1.0, 0.55, 0.2, 1e-3]
POINTS = [1.0, 0.8, 0.55, 0.4, 0.2, 0.1, 1e-3]


def _oracle(rows: torch.Tensor) -> OracleModel:
    process = make_process({"noise": {"name": "loglinear"}, "kernel": {"name": "uniform", "num_states": 3}})
    return OracleModel(MarkovChain(INIT, rows), process, floor=1e-3)


def _enumerated(model, rule: str) -> tuple[float, list[torch.Tensor]]:
    """Per token: Σ_i Σ_x p̂_i(x) KL(q(·|x) ‖ P(·|x)) with p̂_i the sampler's own law at t_i (from the prior), and
    the p̂_i. Tokens are independent, so one read of the sequence (0, 1, 2) gives every value's laws."""
    x = torch.tensor([[0, 1, 2]])
    p = model.process.kernel.prior_probs().to(F64)[:3]
    laws, total = [p], 0.0
    for t, s in zip(GRID, GRID[1:]):
        c = coarse_read(model, x, torch.tensor([t], dtype=F64), 8, context=True)
        q, P = _step_law(model.process, c.log_ratio.to(F64).exp(), x, c.t, torch.tensor([s], dtype=F64), rule,
                         c.context(slice(None)))
        q, P = q[0], P[0]  # [x, y]
        kl = torch.where(q > 0, q * (q.clamp_min(1e-300).log() - P.log()), 0.0)
        total += float((p[:, None] * kl).sum())
        p = p @ q
        laws.append(p)
    return total, laws


def test_independent_tokens_match_enumeration():
    """With independent tokens the frozen-denoiser path is the process itself (the path term vanishes), and J is
    L times the per-token sum of the sampler's one-step KL over its own law at each t_i, which enumeration gives;
    the states J reads are the sampler's (their token frequencies match p̂_i)."""
    model = _oracle(INIT.expand(3, 3).clone())
    L, M = 24, 256
    J = OnPolicyJ(model, POINTS, M, L, "euler", "euler", seed=3)
    v = J.value(GRID)
    per_token, laws = _enumerated(model, "euler")
    assert per_token > 0.01  # Euler's steps are not exact here: the test can fail
    assert abs(v.value - L * per_token) < 4 * v.se + 1e-6, (v.value, L * per_token, v.se)
    x = J.x1
    for i, law in enumerate(laws[1:]):
        x = J.cache[tuple(GRID[: i + 2])][1]
        freq = torch.bincount(x.reshape(-1), minlength=3).to(F64) / x.numel()
        assert (freq - law).abs().max() < 0.02, (i, freq, law)
    none = OnPolicyJ(model, POINTS, 32, L, "none", "euler").value(GRID)
    assert abs(none.value) < 1e-6  # no step term, and the path term of independent tokens is 0


def test_path_term_counts_dependence_and_refine_never_raises_J():
    """On a dependent chain the path term is positive; refine returns a grid of the same steps on the lattice with
    J no higher than the start's."""
    rows = torch.tensor([[0.05, 0.9, 0.05], [0.05, 0.05, 0.9], [0.9, 0.05, 0.05]])
    model = _oracle(rows)
    J = OnPolicyJ(model, POINTS, 32, 8, "none", "euler")
    start = J.value(GRID)
    assert start.value > 4 * start.se > 0
    grid, best = J.refine([GRID], sweeps=2)
    assert len(grid) == len(GRID) and grid[0] == 1.0 and grid[-1] == 1e-3
    assert set(grid) <= set(POINTS) and all(a > b for a, b in zip(grid, grid[1:]))
    assert best.value <= start.value and best.value == J.value(grid).value


TINY = ["experiment.length=24", "experiment.data=null", "jys.search=lattice", "jys.lattice=8", "jys.lattice_samples=16",
        "jys.refine_samples=8"]


def test_refined_schedule_is_written_with_its_objectives_and_refused_where_it_does_not_apply(make_cfg):
    """jys.refine=onpolicy writes the refined grid (on the lattice, J on the sampler's states no higher than the DP
    optimum's: by construction, a check of the record) under its own label; an absorbing kernel, an unknown value, a
    weight and another search are refused."""
    import json

    import pytest

    from pipeline.build import build_model
    from pipeline.search import optimize_config
    cfg = make_cfg("experiment=count_uniform", "model=oracle", "sampler=euler", "nfe=2", "jys.refine=onpolicy", *TINY)
    rec = json.loads(optimize_config(cfg, build_model(cfg)).read_text())
    assert rec["label"] == "jys-lattice-onpolicy" and len(rec["times"]) == 3
    assert rec["J_onpolicy"] <= rec["J_onpolicy_start"] and rec["refine_model_calls"] > 0
    table = json.loads(open(rec["state_file"]).read())
    assert set(rec["times"]) <= set(table["key"]["points"])
    with pytest.raises(ValueError, match="absorbing"):
        optimize_config(make_cfg("experiment=count", "model=oracle", "sampler=euler", "nfe=2", "jys.refine=onpolicy",
                                 *TINY))
    with pytest.raises(ValueError, match="jys.refine"):
        optimize_config(make_cfg("experiment=count_uniform", "model=oracle", "nfe=2", "jys.refine=global", *TINY))
    with pytest.raises(ValueError, match="jys.weight=reach"):
        optimize_config(make_cfg("experiment=count_uniform", "model=oracle", "sampler=euler", "nfe=2",
                                 "jys.refine=onpolicy", "jys.weight=reach", *TINY))
    gauss = make_process({"noise": {"name": "loglinear"},
                          "kernel": {"name": "gaussian", "num_states": 3, "rate_sigma": 1.5, "Q_sigma": 8.0}})
    with pytest.raises(ValueError, match="ordinal"):
        OnPolicyJ(OracleModel(MarkovChain(INIT, INIT.expand(3, 3).clone()), gauss, floor=1e-3), POINTS, 4, 3, "euler",
                  "euler")
    with pytest.raises(ValueError, match="jys.search=hierarchy"):
        optimize_config(make_cfg("experiment=count_uniform", "model=oracle", "sampler=euler", "nfe=2",
                                 "jys.refine=onpolicy", *TINY, "jys.search=hierarchy"))
