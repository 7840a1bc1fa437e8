"""ReMDM (samplers/remasking.py): the step's rule on a hand-made denoiser, the loop schedule, and remasking off
equals the ancestral (Tweedie) sampler draw for draw."""
import pytest
import torch

from conftest import tiny_chain, tiny_process
from models.oracle import OracleModel
from models.protocol import ModelOutput
from samplers.loop import run_sampler
from samplers.remasking import ReMDM, remdm_step
from samplers.schedules import uniform

F64 = torch.float64


class FixedDenoiser:
    """p(x_0 | x_t) the same table at every position and time."""

    def __init__(self, process, probs):
        self.process, self.probs = process, torch.tensor(probs, dtype=F64)

    def __call__(self, x, t):
        return ModelOutput("denoiser", self.probs.expand(*x.shape, -1).clone())


def test_remdm_step_rule_on_a_hand_made_denoiser():
    """One step t → s: an unmasked token is remasked with σ = min(η, (1 − α_s)/α_t), a masked one set to y with
    (α_s − (1 − σ) α_t)/(1 − α_t) · p(y), else left masked (40,000 draws of each)."""
    process = tiny_process("absorbing")
    mask = process.kernel.mask
    model = FixedDenoiser(process, [0.5, 0.3, 0.2])
    rule = ReMDM("cap", eta=0.3)
    t, s = 0.6, 0.35
    a_t, a_s = rule.alpha(t, process), rule.alpha(s, process)
    sig = min(0.3, (1 - a_s) / a_t)
    assert sig == pytest.approx(rule.sigma(t, s, a_t, a_s)) and 0 < sig < 0.3 + 1e-12
    x = torch.tensor([[1, mask]]).expand(40000, 2).contiguous()
    y = remdm_step(model, x, t, s, torch.Generator().manual_seed(0), rule)
    assert float((y[:, 0] == mask).double().mean()) == pytest.approx(sig, abs=0.008)
    assert bool(((y[:, 0] == 1) | (y[:, 0] == mask)).all())
    unmask = (a_s - (1 - sig) * a_t) / (1 - a_t)
    freq = torch.bincount(y[:, 1], minlength=4).double() / 40000
    want = torch.tensor([0.5 * unmask, 0.3 * unmask, 0.2 * unmask, 1 - unmask], dtype=F64)
    assert torch.allclose(freq, want, atol=0.008)


def test_loop_schedule():
    """α(u): 0 at u = 1, α_on on [t_off, t_on], 1 at u = 0, linear in between; σ = η only on steps inside the loop."""
    process = tiny_process("absorbing")
    r = ReMDM("loop")
    assert r.alpha(1.0, process) == 0.0 and r.alpha(0.0, process) == 1.0
    assert r.alpha(0.55, process) == pytest.approx(0.9) and r.alpha(0.05, process) == pytest.approx(0.9)
    assert r.alpha(0.775, process) == pytest.approx(0.45)
    assert r.sigma(0.4, 0.3, 0.9, 0.9) == pytest.approx(0.02)
    assert r.sigma(0.8, 0.6, r.alpha(0.8, process), r.alpha(0.6, process)) == 0.0
    with pytest.raises(ValueError, match="remdm.strategy"):
        ReMDM("conf")
    with pytest.raises(ValueError, match="t_off < t_on"):
        ReMDM("loop", t_on=0.05, t_off=0.5)


@pytest.mark.parametrize("strategy", ["cap", "rescale"])
def test_remasking_off_is_the_ancestral_sampler_draw_for_draw(strategy):
    """η = 0: no token is ever remasked, and every draw is the Tweedie sampler's (the MDLM ancestral step)."""
    model = OracleModel(tiny_chain(), tiny_process("absorbing"), floor=1e-3)
    grid = uniform(6, 1e-3)
    a = run_sampler(model, "remdm", grid, 300, 4, 5, batch_size=100, progress=False, remdm=ReMDM(strategy, eta=0.0))
    b = run_sampler(model, "tweedie", grid, 300, 4, 5, batch_size=100, progress=False)
    assert torch.equal(a.samples, b.samples)
    assert a.calls_per_batch == b.calls_per_batch
    on = run_sampler(model, "remdm", grid, 300, 4, 5, batch_size=100, progress=False, remdm=ReMDM(strategy, eta=0.5))
    assert not torch.equal(on.samples, b.samples)
