"""Training pieces: EMA warm-up, score entropy at the exact scores, bit-identical resume."""
import json

import pytest
import torch

from models.chains import countdown_chain
from models.kernels import Absorbing, Uniform
from models.noise import LogLinear
from models.oracle import OracleModel
from models.process import ForwardProcess
from test_oracle import L, S0, tiny_chain
from train.loop import EMA, train
from train.losses import score_entropy


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


def tiny_training(sequences: int, length: int, dropout: float, **settings):
    """A tiny absorbing CountDown training setup: (process, data, spec, arch, settings)."""
    proc = ForwardProcess(LogLinear(1e-3), Absorbing(32))
    data = countdown_chain().sample(sequences, length, torch.Generator().manual_seed(0))
    spec = {"noise": {"name": "loglinear", "eps": 1e-3}, "kernel": {"name": "absorbing", "num_states": 32}}
    arch = {"hidden_size": 16, "cond_dim": 8, "n_blocks": 1, "n_heads": 2, "dropout": dropout, "scale_by_sigma": True}
    base = {"lr": 1e-3, "weight_decay": 0.0, "grad_clip": 1.0, "ema": 0.999, "t_min": 1e-3, "seed": 0, "log_every": 1}
    return proc, data, spec, arch, {**base, **settings}


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
