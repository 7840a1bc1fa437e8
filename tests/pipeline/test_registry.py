"""Registries: datasets (data/), model kinds (pipeline.build.MODELS), metrics (pipeline/metrics.py)."""
import types

import numpy as np
import pytest
import torch
from omegaconf import open_dict

import data as data_registry
from models.kernels import Absorbing
from pipeline.build import MODELS, build_model
from pipeline.experiment import experiment_of
from pipeline.metrics import METRICS, evaluate

TOY = torch.tensor([[i % 5, i // 5] + [j % 5 for j in range(6)] for i in range(10)])  # 10 distinct [8] in [0, 5)


def toy_module(tmp_path):
    """A dataset module with the registry's interface, backed by one file it writes."""
    m = types.ModuleType("toy")
    m.vocab = lambda spec: 5
    m.length = lambda spec: int(spec["length"])

    def build(spec):
        path = tmp_path / "toy.npy"
        if not path.is_file():
            np.save(path, TOY.numpy())
        return {"train": path}

    m.build = build
    m.size = lambda spec, split: len(TOY)
    m.load = lambda spec, split, rows=None: torch.from_numpy(np.load(build(spec)[split])).long()[
        rows if rows is not None else slice(None)]
    return m


def toy_cfg(make_cfg, *overrides):
    """An experiment without a chain whose data come from the toy dataset."""
    cfg = make_cfg("experiment=count", *overrides)
    with open_dict(cfg):
        cfg.experiment.chain = None
        cfg.experiment.length = 8
        cfg.experiment.data = {"name": "toy", "length": 8}
        cfg.experiment.metrics = ["countdown_error"]
    return cfg


def test_a_registered_toy_dataset_serves_an_experiment_without_a_chain(make_cfg, tmp_path, monkeypatch):
    monkeypatch.setitem(data_registry.DATASETS, "toy", toy_module(tmp_path))
    cfg = toy_cfg(make_cfg)
    x0 = experiment_of(cfg).sample_x0(6, torch.Generator().manual_seed(0))
    rows = {tuple(r) for r in TOY.tolist()}
    assert x0.shape == (6, 8) and all(tuple(r) in rows for r in x0.tolist())
    assert len({tuple(r) for r in x0.tolist()}) == 6  # distinct rows
    assert torch.equal(x0, experiment_of(cfg).sample_x0(6, torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="asked for 11 data sequences.*'toy' holds 10"):
        experiment_of(cfg).sample_x0(11, torch.Generator().manual_seed(0))
    assert experiment_of(cfg).vocab == 5  # from the dataset module: no experiment.chain needed
    process = experiment_of(cfg).process
    assert isinstance(process.kernel, Absorbing) and process.data_states == 5
    ident = experiment_of(cfg).identity()
    assert ident["dataset"] == "toy" and len(ident["sha256"]["train"]) == 64
    assert evaluate(cfg, x0) == {"countdown_error": pytest.approx(float(
        ((x0[:, :-1] > 0) & (x0[:, 1:] != x0[:, :-1] - 1)).double().mean()))}
    with pytest.raises(ValueError, match=r"experiment 'count' has no Markov chain .* model 'oracle' \(kind 'oracle'\)"):
        build_model(cfg)  # the oracle needs a chain
    with open_dict(cfg):
        cfg.experiment.metrics = ["countdown_error", "chain_nll"]
    with pytest.raises(ValueError, match="has no Markov chain .* metric 'chain_nll'"):
        evaluate(cfg, x0)
    with open_dict(cfg):
        cfg.experiment.length = 16
    with pytest.raises(ValueError, match="dataset 'toy' holds sequences of length 8, but experiment 'count' has length 16"):
        experiment_of(cfg).sample_x0(2, torch.Generator().manual_seed(0))


def test_unknown_names_are_clear_errors(make_cfg, tmp_path):
    with pytest.raises(ValueError, match=r"unknown dataset 'nope' \(experiment.data.name\); expected one of \['countdown'"):
        experiment_of(make_cfg("experiment.data.name=nope")).sample_x0(2, torch.Generator().manual_seed(0))
    with pytest.raises(ValueError, match=r"unknown model kind 'nope' \(model.kind of model 'oracle'\); expected one of "
                                         r"\['oracle', 'sedd', 'tauldr'\]"):
        build_model(make_cfg("model.kind=nope"))
    with pytest.raises(ValueError, match=r"unknown metric 'nope' in experiment.metrics of 'count'; expected names from "
                                         r"\['bigram_tv', 'chain_invalid_rate', 'chain_nll', 'countdown_error', 'countdown_error_published', 'countdown_error_se', 'digits_fid', 'entropy'"):
        evaluate(make_cfg("experiment.metrics=[countdown_error,nope]"), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match=r"model 'count-sedd' is not among experiment 'chain'.s models \['oracle'\]"):
        build_model(make_cfg("experiment=chain", "model=count-sedd"))
    with pytest.raises(ValueError, match="unknown chain preset 'nope'"):
        build_model(make_cfg("experiment.chain=nope"))
    assert sorted(MODELS) == ["oracle", "sedd", "tauldr"] and "countdown_error" in METRICS


def test_metrics_come_from_the_experiment_config(make_cfg, tmp_path):
    x = torch.tensor([[3, 2, 1, 0, 5, 4], [3, 1, 0, 0, 2, 2]])
    out = evaluate(make_cfg("experiment=count"), x)
    assert list(out) == ["chain_invalid_rate", "chain_nll", "countdown_error", "countdown_error_se",
                         "countdown_error_published", "unigram_tv", "bigram_tv", "token_entropy_gap"]
    assert out["countdown_error"] == pytest.approx(2 / 10)  # (3,1), (2,2) broken; (0, ·) free
    chain_file = tmp_path / "chain.npz"
    np.savez(chain_file, initial=np.full(6, 1 / 6), transition=np.full((6, 6), 1 / 6))
    out = evaluate(make_cfg("experiment=chain", f"oracle.chain_file={chain_file}"), x)
    assert list(out) == ["chain_invalid_rate", "chain_nll"] and out["chain_invalid_rate"] == 0.0
    with pytest.raises(ValueError, match=r"samples hold tokens in \[0, 32\] but the data has 32 tokens"):
        evaluate(make_cfg("experiment=count"), torch.tensor([[32, 0, 1]]))
