"""jys.weight=auto (the default): J takes the marginal one-step term where it carries Euler's (non-absorbing kernels),
the model gives a denoiser and the noise-removal draw is the grid's last step; the path KL alone elsewhere
(jys.schedule.resolve_weight). The label stays 'jys'."""
import json

import pytest
import torch

from jys.schedule import find_schedule, resolve_weight
from models.kernels import make_kernel
from models.protocol import output_of
from models.sedd import SEDDModel
from models.tauldr import TauLDRModel
from pipeline.build import build_model
from pipeline.experiment import experiment_of
from pipeline.search import optimize_config, settings_from

TINY = ["experiment=count_uniform", "model=oracle", "sampler=euler", "nfe=2", "experiment.length=24",
        "experiment.data=null", "jys.lattice=8", "jys.lattice_samples=16"]


def test_auto_is_marginal_only_for_eulers_term_with_a_denoiser_and_the_draw_as_last_step():
    uniform, absorbing = make_kernel("uniform", 4), make_kernel("absorbing", 4)
    assert resolve_weight("auto", "euler", uniform, "denoiser", "denoise") == "marginal"
    assert resolve_weight("auto", "euler", uniform, "denoiser", "eps") == "none"  # grid at ε (argmax, refine, eps)
    assert resolve_weight("auto", "euler", uniform, "score", "denoise") == "none"  # the term needs p(x0 | x_t)
    assert resolve_weight("auto", "euler", uniform, None, "denoise") == "none"  # a model that does not say
    assert resolve_weight("auto", "tau_leaping", uniform, "denoiser", "denoise") == "none"  # the reject rule
    assert resolve_weight("auto", "none", absorbing, "denoiser", "denoise") == "none"  # no one-step term to replace
    assert resolve_weight("reach", "tau_leaping", uniform, "score", "eps") == "reach"  # a given weight is kept
    with pytest.raises(ValueError, match="unknown jys.weight 'bogus'"):
        resolve_weight("bogus", "euler", uniform, "denoiser", "denoise")


def test_models_say_what_they_output():
    assert SEDDModel.output == "score" and TauLDRModel.output == "denoiser"
    assert output_of(object()) is None

    class Net:
        output = torch.nn.Linear(2, 2)  # a layer of that name says nothing about the output
    assert output_of(Net()) is None


def test_default_search_reads_the_marginal_table_and_keeps_its_label(make_cfg):
    model = build_model(make_cfg(*TINY))
    auto = json.loads(optimize_config(make_cfg(*TINY), model).read_text())
    given = json.loads(optimize_config(make_cfg(*TINY, "jys.weight=marginal"), model).read_text())
    plain = json.loads(optimize_config(make_cfg(*TINY, "jys.weight=none"), model).read_text())
    assert auto["label"] == "jys" and auto["weight"] == "marginal"
    assert given["label"] == "jys-wmarginal" and given["state_file"] == auto["state_file"]  # one table
    assert given["times"] == auto["times"] and given["J"] == auto["J"]
    assert plain["label"] == "jys-wnone" and plain["weight"] == "none" and plain["state_file"] != auto["state_file"]
    score = json.loads(optimize_config(make_cfg(*TINY, "oracle.output=score")).read_text())
    assert score["weight"] == "none"  # no denoiser: the path KL alone
    argmax = json.loads(optimize_config(make_cfg(*TINY, "final_step=argmax"), model).read_text())
    assert argmax["weight"] == "none" and argmax["end"] == "eps"  # the grid at ε: the plain term
    with pytest.raises(ValueError, match="unknown jys.weight 'heavy'"):
        settings_from(make_cfg(*TINY, "jys.weight=heavy"))


def test_find_schedule_takes_the_same_default(make_cfg):
    cfg = make_cfg(*TINY)
    model = build_model(cfg)
    x0 = experiment_of(cfg).sample_x0(16, torch.Generator().manual_seed(0))
    kw = dict(nfe=2, sampler="euler", eps=float(cfg.eps), lattice=8, seed=0)
    auto, marginal, plain = (find_schedule(model, x0, weight=w, **kw) for w in ("auto", "marginal", "none"))
    assert auto.times.tolist() == marginal.times.tolist() and auto.J == marginal.J
    assert plain.J != auto.J  # the plain term's J: another table
    argmax = find_schedule(model, x0, final_step="argmax", **kw)
    assert argmax.J == find_schedule(model, x0, final_step="argmax", weight="none", **kw).J
