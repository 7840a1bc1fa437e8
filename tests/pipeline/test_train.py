"""Training pieces: EMA warm-up, score entropy at the exact scores, bit-identical resume."""
import json

import pytest
import torch

from conftest import S0, L, tiny_chain
from models.chains import countdown_chain
from models.kernels import Absorbing, GaussianTarget, Uniform
from models.noise import Exponential, LogLinear
from models.oracle import OracleModel
from models.process import ForwardProcess
from train.loop import EMA, learning_rate, train
from train.losses import ct_elbo, forward_jump, score_entropy


def test_ema_forgets_its_initialization_in_a_short_run():
    p = torch.nn.Parameter(torch.zeros(3))
    ema = EMA([p], decay=0.999)
    with torch.no_grad():
        p.fill_(1.0)
    for _ in range(50):
        ema.update([p])
    assert ema.shadow[0].min() > 0.99  # without the warm-up: 1 − 0.999^50 ≈ 0.05


def test_score_entropy_is_minimized_by_the_exact_scores():
    """E over x0 ~ p(x0 | x_t) of the loss is smallest at the oracle's log ratios."""
    for kernel in (Absorbing(S0), Uniform(S0)):
        proc = ForwardProcess(LogLinear(), kernel)
        oracle = OracleModel(tiny_chain(), proc, floor=0.05, output="score")
        g = torch.Generator().manual_seed(0)
        x0 = oracle.chain.sample(400, L, g)
        t = torch.full((400,), 0.6, dtype=torch.float64)
        xt = proc.sample(x0, t, g)
        exact = oracle(xt, t).values
        base = score_entropy(exact, xt, x0, t, proc).mean()
        for scale in (0.7, 1.3):
            assert score_entropy(exact * scale, xt, x0, t, proc).mean() > base
        noisy = exact + 0.3 * torch.randn(exact.shape, generator=g, dtype=torch.float64)
        assert score_entropy(noisy, xt, x0, t, proc).mean() > base


def test_ct_elbo_is_minimized_by_the_exact_denoiser():
    """tauLDR's loss, averaged over data, times, x_t and x̃ (common draws for every candidate), is smallest
    at the exact p(x0 | x̃) of the oracle, under the Gaussian (ordinal) and the uniform kernel."""
    for kernel in (GaussianTarget(S0, rate_sigma=1.5, Q_sigma=8.0), Uniform(S0)):
        proc = ForwardProcess(Exponential(), kernel)
        oracle = OracleModel(tiny_chain(), proc, floor=0.05, output="denoiser")
        g = torch.Generator().manual_seed(0)
        x0 = oracle.chain.sample(4000, L, g)
        t = 0.01 + 0.5 * torch.rand(4000, generator=g, dtype=torch.float64)
        x_tilde = forward_jump(proc.sample(x0, t, g), t, proc, g)
        exact = oracle(x_tilde, t).values.log().float()
        base = ct_elbo(exact, x_tilde, x0, t, proc, nll_weight=0.0)
        assert torch.isfinite(base)
        for worse in (exact * 0.7, exact * 1.3, exact + 0.5 * torch.randn(exact.shape, generator=g)):
            assert ct_elbo(worse, x_tilde, x0, t, proc, nll_weight=0.0) > base


def test_forward_jump_moves_one_token_by_the_forward_rates():
    """x̃ differs from x_t in exactly one position; the new state's frequencies follow Q's off-diagonal row."""
    kernel = GaussianTarget(S0, rate_sigma=1.5, Q_sigma=8.0)
    proc = ForwardProcess(Exponential(), kernel)
    x_t = torch.zeros(20000, 1, dtype=torch.long)
    x_tilde = forward_jump(x_t, torch.full((20000,), 0.3, dtype=torch.float64), proc, torch.Generator().manual_seed(1))
    assert (x_tilde != x_t).all()
    Q = kernel.rate_matrix()[0, 1:]
    freq = torch.bincount(x_tilde[:, 0], minlength=S0)[1:].double() / 20000
    assert torch.allclose(freq, Q / Q.sum(), atol=0.015)


def tiny_training(sequences: int, length: int, dropout: float, **settings):
    """A tiny absorbing CountDown training setup: (process, data, spec, arch, settings)."""
    proc = ForwardProcess(LogLinear(1e-3), Absorbing(32))
    data = countdown_chain().sample(sequences, length, torch.Generator().manual_seed(0))
    spec = {"noise": {"name": "loglinear", "eps": 1e-3}, "kernel": {"name": "absorbing", "num_states": 32}}
    arch = {"hidden_size": 16, "cond_dim": 8, "n_blocks": 1, "n_heads": 2, "dropout": dropout, "scale_by_sigma": True}
    base = {"lr": 1e-3, "weight_decay": 0.0, "grad_clip": 1.0, "ema": 0.999, "t_min": 1e-3, "seed": 0, "log_every": 1}
    return proc, data, spec, arch, {**base, **settings}


@pytest.mark.slow
def test_resumed_training_is_bit_identical(tmp_path):
    proc, data, spec, arch, settings = tiny_training(64, 16, 0.1, steps=4, batch_size=8, warmup=2, bf16=False,
                                                     ckpt_every=2)
    train(data, proc, spec, arch, settings, tmp_path / "w1", tmp_path / "c1", "test", progress=False, device="cpu")
    train(data, proc, spec, arch, {**settings, "steps": 2}, tmp_path / "w2", tmp_path / "c2", "test", progress=False)
    note = train(data, proc, spec, arch, settings, tmp_path / "w2", tmp_path / "c2", "test", progress=False)
    assert note["steps"] == 4
    assert (tmp_path / "w1" / "model.safetensors").read_bytes() == (tmp_path / "w2" / "model.safetensors").read_bytes()
    losses = [json.loads((tmp_path / w / "training.json").read_text())["loss_curve"] for w in ("w1", "w2")]
    assert losses[0] == losses[1]


def test_training_device_is_resolved_and_bad_setups_are_refused(tmp_path):
    proc, data, spec, arch, settings = tiny_training(16, 8, 0.0, steps=1, batch_size=4, warmup=1, bf16=True,
                                                     ckpt_every=1)
    args = (data, proc, spec, arch, settings, tmp_path / "w", tmp_path / "c", "test")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        train(*args, progress=False, device="tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="torch sees no CUDA GPU"):
            train(*args, progress=False, device="cuda")
    uniform = ForwardProcess(LogLinear(1e-3), Uniform(32))
    with pytest.raises(ValueError, match="scale_by_sigma=true with the 'uniform' graph"):
        train(data, uniform, spec, arch, settings, tmp_path / "w", tmp_path / "c", "test", progress=False)
    note = train(*args, progress=False, device="auto")  # bf16 autocast on the resolved device's type
    assert note["steps"] == 1 and note["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    state = torch.load(tmp_path / "c" / "checkpoint.pt", map_location="meta", weights_only=False)
    assert all(t.device.type == "meta" for t in state["ema"])  # loadable anywhere


def test_held_out_curve_and_wall_clock_stop_resume_to_the_same_weights(tmp_path):
    """valid_every records the EMA weights' held-out loss (the same fixed batch each time, so it equals a
    fresh evaluation of the exported weights); max_minutes=0 stops after one step, and calls that resume
    reach the same weights and curves as one uninterrupted run."""
    proc, data, spec, arch, settings = tiny_training(64, 16, 0.0, steps=3, batch_size=8, warmup=2, bf16=False,
                                                     ckpt_every=10, valid_every=1, valid_size=12)
    valid = countdown_chain().sample(20, 16, torch.Generator().manual_seed(5))
    with pytest.raises(ValueError, match="valid_every=1 asks for a held-out loss"):
        train(data, proc, spec, arch, settings, tmp_path / "w0", tmp_path / "c0", "test", progress=False)
    whole = train(data, proc, spec, arch, settings, tmp_path / "w1", tmp_path / "c1", "test", progress=False,
                  valid=valid)
    assert [s for s, _ in whole["valid_curve"]] == [1, 2, 3]
    stopped = {**settings, "max_minutes": 0}
    for calls in range(1, 4):
        note = train(data, proc, spec, arch, stopped, tmp_path / "w2", tmp_path / "c2", "test", progress=False,
                     valid=valid)
        assert note["steps"] == calls
    assert note["valid_curve"] == whole["valid_curve"] and note["loss_curve"] == whole["loss_curve"]
    assert (tmp_path / "w1" / "model.safetensors").read_bytes() == (tmp_path / "w2" / "model.safetensors").read_bytes()


def test_warm_start_continues_exported_weights_and_its_curves(tmp_path):
    """init_from, with no checkpoint: the network and its EMA start at the exported weights (one further
    step at learning rate 0 exports them unchanged), the step count and curves go on from the export, the fresh
    optimizer's warm-up restarts there (and a resumed call keeps that start), and a folder without an
    export is refused by name."""
    proc, data, spec, arch, settings = tiny_training(64, 16, 0.0, steps=2, batch_size=8, warmup=2, bf16=False,
                                                     ckpt_every=10)
    first = train(data, proc, spec, arch, settings, tmp_path / "w1", tmp_path / "c1", "test", progress=False)
    warm = {**settings, "init_from": str(tmp_path / "w1")}
    same = train(data, proc, spec, arch, {**warm, "steps": 3, "lr": 0.0}, tmp_path / "w2", tmp_path / "c2", "test",
                 progress=False)
    assert same["steps"] == 3 and same["loss_curve"][:2] == first["loss_curve"]
    assert (tmp_path / "w1" / "model.safetensors").read_bytes() == (tmp_path / "w2" / "model.safetensors").read_bytes()
    on = train(data, proc, spec, arch, {**warm, "steps": 3}, tmp_path / "w3", tmp_path / "c3", "test",
               progress=False)
    assert on["steps"] == 3 and on["loss_curve"][:2] == first["loss_curve"] and on["optimizer_started_at"] == 2
    resumed = train(data, proc, spec, arch, {**warm, "steps": 4}, tmp_path / "w3", tmp_path / "c3", "test",
                    progress=False)
    assert resumed["steps"] == 4 and resumed["optimizer_started_at"] == 2 and resumed["loss_curve"][:3] == on["loss_curve"]
    with pytest.raises(ValueError, match="holds 4 steps already; train.steps=4 must exceed"):
        train(data, proc, spec, arch, {**warm, "steps": 4, "init_from": str(tmp_path / "w3")}, tmp_path / "w5", tmp_path / "c5",
              "test", progress=False)
    assert [learning_rate(settings, k, first_step=2) for k in (2, 3, 4)] == [5e-4, 1e-3, 1e-3]  # warm-up restarts
    assert learning_rate(settings, 2) == 1e-3
    with pytest.raises(FileNotFoundError, match="needs model.safetensors and training.json"):
        train(data, proc, spec, arch, {**settings, "init_from": str(tmp_path)}, tmp_path / "w4", tmp_path / "c4",
              "test", progress=False)
