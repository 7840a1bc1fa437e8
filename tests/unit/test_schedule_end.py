"""jys.end: where a JYS grid ends. Under 'denoise' (the default for euler with a drawn noise removal) the grid of N
steps is J's DP optimum over N + 1 steps to ε with ε dropped, its noise-removal call the last step; `python -m jys
evaluate` reads any grid with ε appended; a schedule made so is refused to a sampler without that draw."""
import json

import pytest
import torch

from jys.lattice import optimal_grids
from pipeline.build import build_model
from pipeline.experiment import experiment_of
from pipeline.runs import resolve_schedule
from pipeline.search import _from_json, grid_objective, optimize_config, settings_from

F64 = torch.float64
TINY = ["experiment=count_uniform", "model=oracle", "sampler=euler", "nfe=2", "experiment.length=24",
        "experiment.data=null", "jys.lattice=8", "jys.lattice_samples=16"]


def test_denoise_end_is_the_dp_of_one_more_step_and_evaluates_alike(make_cfg):
    cfg = make_cfg(*TINY)
    model = build_model(cfg)
    rec = json.loads(optimize_config(cfg, model).read_text())
    eps = float(cfg.eps)
    assert rec["label"] == "jys" and rec["end"] == "denoise" and len(rec["times"]) == 3 and rec["times"][-1] > eps
    table = json.loads(open(rec["state_file"]).read())
    points = table["key"]["points"]
    path, J = optimal_grids(torch.tensor(_from_json(table["D"]), dtype=F64), 3)[3]
    assert [points[i] for i in path] == [*rec["times"], points[-1]] and points[-1] == pytest.approx(eps)
    assert rec["J"] == pytest.approx(J, rel=1e-12)
    scored = grid_objective(experiment_of(cfg), model, settings_from(cfg), "euler",
                            torch.tensor(rec["times"], dtype=F64), 2)
    assert scored["end"] == "denoise" and len(scored["interval_terms"]) == 3
    assert scored["J"] == pytest.approx(J, rel=1e-9)  # the same lattice, the grid's ε appended
    at_eps_grid = grid_objective(experiment_of(cfg), model, settings_from(cfg), "euler",
                             torch.tensor([1.0, rec["times"][1], eps], dtype=F64), 2)  # its points on the lattice
    assert len(at_eps_grid["interval_terms"]) == 2 and at_eps_grid["J"] > scored["J"]  # a grid at ε: no step appended
    assert at_eps_grid["lattice_points"] == scored["lattice_points"]  # one budget, one lattice (nfe + 1 steps' own)

    at_eps = json.loads(optimize_config(make_cfg(*TINY, "jys.end=eps"), model).read_text())
    assert at_eps["label"] == "jys-eps" and at_eps["times"][-1] == pytest.approx(eps)
    assert at_eps["J"] > rec["J"]  # J's optimum over 2 steps to ε, against 3 (one of them the noise removal's)

    label, grid, nfe, _ = resolve_schedule(make_cfg(*TINY, "schedule=jys"))
    assert label == "jys" and grid.tolist() == rec["times"] and nfe == 2
    with pytest.raises(ValueError, match="final_step=argmax leaves that step out"):
        resolve_schedule(make_cfg(*TINY, "schedule=jys", "final_step=argmax"))


def test_denoise_end_refused_where_the_noise_removal_is_no_draw(make_cfg):
    with pytest.raises(ValueError, match="final_step=argmax"):
        optimize_config(make_cfg(*TINY, "jys.end=denoise", "final_step=argmax"))
    with pytest.raises(ValueError, match="jys.search=hierarchy"):
        optimize_config(make_cfg(*TINY, "jys.end=denoise", "jys.search=hierarchy"))
    with pytest.raises(ValueError, match="unknown jys.end 'zero'"):
        settings_from(make_cfg(*TINY, "jys.end=zero"))
    cfg = make_cfg(*TINY, "final_step=argmax")
    rec = json.loads(optimize_config(cfg).read_text())  # auto: the grid stays at ε
    assert rec["end"] == "eps" and rec["times"][-1] == pytest.approx(float(cfg.eps))
