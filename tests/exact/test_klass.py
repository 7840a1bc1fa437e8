"""KLASS (samplers/klass.py): the rule on hand-made probability tables, its calls, and its law under the exact oracle."""
import pytest
import torch

from conftest import chain_law_pvalue, tiny_chain, tiny_process
from models.oracle import OracleModel
from models.protocol import ModelOutput
from samplers.klass import KLASS, klass_sample, ready_tokens
from samplers.loop import run_sampler
from samplers.schedules import times_from_counts

F64 = torch.float64


class Tables:
    """p(x_0 | x_t) from a fixed table per position (L = 6, S0 = 3); records how many tokens each call saw unmasked."""

    def __init__(self, process, settle: bool):
        self.process, self.settle, self.seen = process, settle, []
        self.calls = 0

    def __call__(self, x, t):
        self.seen.append(int((x[0] != self.process.kernel.mask).sum()))
        self.calls += 1
        confident = torch.tensor([0.95, 0.03, 0.02], dtype=F64)
        if not self.settle:  # the confident prediction moves between calls: never stable
            confident = confident.roll(self.calls)
        table = torch.stack([confident] * 4 + [torch.tensor([0.4, 0.3, 0.3], dtype=F64)] * 2)
        return ModelOutput("denoiser", table.expand(x.shape[0], -1, -1).clone())


def test_ready_rule_on_a_hand_made_table():
    """Ready = masked, max p > conf and the last H KLs all < kl."""
    p = torch.tensor([[[0.95, 0.05], [0.95, 0.05], [0.6, 0.4], [0.95, 0.05]]], dtype=F64)
    hist = torch.tensor([[[0.0, 0.001], [0.0, 0.02], [0.0, 0.0], [0.0, 0.0]]], dtype=F64)
    masked = torch.tensor([[True, True, True, False]])
    assert ready_tokens(p, hist, masked, KLASS(0.9, 0.01, 2)).tolist() == [[True, False, False, False]]


@pytest.mark.parametrize("settle,seen", [(True, [0, 1, 2, 4, 5]), (False, [0, 1, 2, 3, 4, 5])])
def test_settled_tokens_are_revealed_early(settle, seen):
    """Grid counts 0 → 1 → … → 6, one token per call at least. Four confident positions whose p is the same at every
    call are ready at the third call (two KLs of 0 after one without a predecessor): both left are revealed there,
    and the sequence ends a call early. If the confident prediction moves, no token is ever ready: one per call."""
    process = tiny_process("absorbing")
    model = Tables(process, settle)
    x = torch.full((1, 6), process.kernel.mask)
    out, calls = klass_sample(model, x, torch.Generator().manual_seed(0), [0, 1, 2, 3, 4, 5, 6], KLASS(0.9, 0.01, 2))
    assert model.seen == seen and int(calls[0]) == len(seen)
    assert not bool((out == process.kernel.mask).any())


def test_klass_one_token_per_call_is_exact():
    """With thresholds no token meets (conf 1) and a grid of one token per call, KLASS reveals one token per call at its
    most confident position and draws it from p: under the exact oracle that is the chain's law (chi-square)."""
    chain = tiny_chain()
    model = OracleModel(chain, tiny_process("absorbing"), floor=1e-3)
    grid = times_from_counts([0, 1, 2, 3, 4], model.process, 4)
    res = run_sampler(model, "klass", grid, 6000, 4, 0, batch_size=2000, progress=False, klass=KLASS(1.0, 0.0, 2))
    assert res.nfe == 4.0
    assert chain_law_pvalue(res.samples, chain.mixed(1e-3)) > 1e-3
    with pytest.raises(ValueError, match="klass needs"):
        KLASS(1.5, 0.01, 2)
