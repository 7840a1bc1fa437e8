"""fit_chain against hand counts, its edge cases, and its command line."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT
from models.chains import MarkovChain, fit_chain, load_chain
from pipeline.fit_chain import fit_experiment

# Four states; state 3 never occurs. State 2 occurs only as a last token, so it is never a source.
DATA = torch.tensor([[0, 1, 1, 2],
                     [1, 0, 0, 1],
                     [0, 0, 1, 2]])


def test_fit_equals_hand_counts_with_smoothing():
    a = 0.5
    chain = fit_chain(DATA, 4, smoothing=a)
    # used states U = {0, 1, 2}, |U| = 3. First tokens: 0, 1, 0.
    assert chain.initial.tolist() == pytest.approx([(2 + a) / (3 + 3 * a), (1 + a) / (3 + 3 * a), a / (3 + 3 * a), 0.0])
    # pairs by hand: row 1 (0,1) (1,1) (1,2); row 2 (1,0) (0,0) (0,1); row 3 (0,0) (0,1) (1,2)
    from0 = [2, 3, 0]  # (0,0) twice, (0,1) three times
    from1 = [1, 1, 2]  # (1,0), (1,1), (1,2) twice
    T = chain.transition
    assert T[0, :3].tolist() == pytest.approx([(c + a) / (5 + 3 * a) for c in from0])
    assert T[1, :3].tolist() == pytest.approx([(c + a) / (4 + 3 * a) for c in from1])
    assert T[0, 3] == 0 and T[1, 3] == 0 and chain.initial[3] == 0  # the unused state: 0 in every used row
    # 2 and 3 are never sources: the smoothed unigram law of U (counts 0: 5, 1: 5, 2: 2 of 12 tokens)
    uni = [(c + a) / (12 + 3 * a) for c in (5, 5, 2)] + [0.0]
    assert T[2].tolist() == pytest.approx(uni) and T[3].tolist() == pytest.approx(uni)
    assert chain.transition.dtype == torch.float64


def test_fit_without_smoothing_is_the_exact_frequencies():
    chain = fit_chain(DATA.numpy(), 4, smoothing=0)
    assert chain.initial.tolist() == pytest.approx([2 / 3, 1 / 3, 0, 0])
    assert chain.transition[0].tolist() == pytest.approx([2 / 5, 3 / 5, 0, 0])
    assert chain.transition[1].tolist() == pytest.approx([1 / 4, 1 / 4, 2 / 4, 0])
    assert chain.transition[2].tolist() == pytest.approx([5 / 12, 5 / 12, 2 / 12, 0])


@pytest.mark.parametrize("data,states,smoothing,match", [
    (torch.zeros(5, dtype=torch.long), 3, 0.5, r"sequences must be \[N, L\], got shape \(5,\)"),
    (torch.zeros(2, 1, dtype=torch.long), 3, 0.5, r"at least 2 tokens .* got shape \(2, 1\)"),
    (torch.zeros(0, 4, dtype=torch.long), 3, 0.5, r"at least 1 sequence .* got shape \(0, 4\)"),
    (torch.tensor([[0, 3]]), 3, 0.5, r"tokens in \[0, 3\], expected \[0, 3\) \(num_states=3\)"),
    (torch.tensor([[-1, 0]]), 3, 0.5, r"tokens in \[-1, 0\], expected \[0, 3\)"),
    (torch.tensor([[0, 1]]), 3, -0.1, r"smoothing must be a finite number >= 0, got -0.1"),
    (torch.tensor([[0, 1]]), 3, float("nan"), r"smoothing must be a finite number >= 0, got nan"),
    (torch.tensor([[0.0, 1.0]]), 3, 0.5, r"integer tokens, got dtype torch.float32"),
    (torch.tensor([[0, 1]]), 0, 0.5, r"num_states must be a positive integer, got 0"),
])
def test_bad_input_is_refused_naming_the_value(data, states, smoothing, match):
    with pytest.raises(ValueError, match=match):
        fit_chain(data, states, smoothing)


def test_chunked_counting_equals_one_pass_on_overlapping_windows():
    stream = torch.randint(0, 6, (500,), generator=torch.Generator().manual_seed(0))
    windows = stream.unfold(0, 16, 1)  # a view, as the text dataset loads its windows
    whole, chunked = fit_chain(windows, 6), fit_chain(windows, 6, chunk=37)
    assert torch.allclose(whole.transition, chunked.transition, rtol=0, atol=1e-15)
    assert torch.allclose(whole.initial, chunked.initial, rtol=0, atol=1e-15)


def test_fit_recovers_a_known_chain():
    g = np.random.default_rng(1)
    truth = MarkovChain(torch.tensor(g.dirichlet(np.ones(5))), torch.tensor(g.dirichlet(np.ones(5) * 2, size=5)))
    x = truth.sample(20000, 20, torch.Generator().manual_seed(2))
    fit = fit_chain(x, 5)
    # 20000·19 transitions: about 76,000 per row, so each entry within ~0.005 (a few standard errors)
    assert (fit.transition - truth.transition).abs().max() < 0.01
    assert (fit.initial - truth.initial).abs().max() < 0.02  # 20000 first tokens


def test_fit_command_refuses_an_unknown_experiment():
    with pytest.raises(ValueError, match=r"unknown experiment 'nope'; expected one of \[.*'count'.*'folk'.*\]"):
        fit_experiment("nope", "/nonexistent/out.npz")
    with pytest.raises(ValueError, match=r"experiment 'chain' has no dataset files \(experiment.data is null\)"):
        fit_experiment("chain", "/nonexistent/out.npz")
    res = subprocess.run([sys.executable, "-m", "pipeline.fit_chain", "nope", "out.npz"], cwd=ROOT,
                         capture_output=True, text=True)
    assert res.returncode == 1 and "unknown experiment 'nope'; expected one of" in res.stderr
    assert "Traceback" not in res.stderr


def test_fit_command_writes_the_chain_of_the_training_split(tmp_path, monkeypatch):
    """fit_experiment on CountDown's data (built small in tmp_path): the file holds fit_chain of the
    training split, and the valid NLL is the per-token NLL of the held-out sequences."""
    import hydra

    from pipeline.experiment import Experiment

    def compose(name, overrides):  # the real config with CountDown's files made small under tmp_path
        return real_compose(name, overrides=overrides + [f"experiment.data.dir={tmp_path / 'data'}", "experiment.length=8",
                                                         "experiment.data.num_train=64", "experiment.data.num_valid=16"])

    import pipeline.fit_chain as fit_module

    real_compose = hydra.compose
    monkeypatch.setattr(fit_module, "compose", compose)
    st = fit_experiment("count", tmp_path / "chain.npz", smoothing=0.25)
    chain = load_chain(tmp_path / "chain.npz")
    with hydra.initialize_config_dir(config_dir=str(ROOT / "configs"), version_base=None):
        cfg = compose("config", overrides=["experiment=count"])
    experiment = Experiment.from_config(cfg)
    train, valid = experiment.load("train"), experiment.load("valid")
    assert torch.equal(chain.transition, fit_chain(train, 32, 0.25).transition)
    assert st["states"] == 32 and st["sequences"] == 64 and st["length"] == 8
    assert st["used_states"] == int((torch.bincount(train.reshape(-1), minlength=32) > 0).sum())
    nll = -float(chain.log_prob(valid).sum()) / valid.numel()
    assert st["valid_nll"] == pytest.approx(nll)
    assert st["valid_nll_floor"] == pytest.approx(-float(chain.mixed(1e-3).log_prob(valid).sum()) / valid.numel())
