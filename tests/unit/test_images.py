"""The image experiment: digits files, digits-FID against scipy, Gaussian-kernel reverse rates against
dense loops, and tauLDR's training (loss falls, bit-identical resume)."""
import json

import numpy as np
import pytest
import scipy.linalg
import torch

from data import digits
from metrics.digits_features import DigitsClassifier
from metrics.fid import frechet_distance, load_extractor
from models.kernels import GaussianTarget
from models.noise import Exponential
from models.process import ForwardProcess
from models.protocol import ModelOutput, reverse_rates
from models.tauldr_loaders import load_tauldr_project
from train.loop import train


def test_digits_files_are_deterministic_split_and_never_overwritten(tmp_path):
    spec = {"dir": str(tmp_path / "a"), "num_valid": 300, "seed": 0}
    paths = digits.build(spec)
    again = digits.build({**spec, "dir": str(tmp_path / "b")})
    for split in ("train", "valid"):
        assert paths[split].read_bytes() == again[split].read_bytes()
    train_x, valid_x = digits.load(spec, "train"), digits.load(spec, "valid")
    assert train_x.shape == (1497, 64) and valid_x.shape == (300, 64)
    assert train_x.min() == 0 and train_x.max() == 16 and digits.labels(spec, "valid").shape == (300,)
    rows = {tuple(r) for r in train_x.tolist()}
    assert sum(tuple(r) in rows for r in valid_x.tolist()) < 10  # held out: (near-)duplicate images aside
    with pytest.raises(ValueError, match=r"holds an array of shape \(1497, 64\), but \(1597, 64\) was asked for"):
        digits.build({**spec, "num_valid": 200})
    with pytest.raises(ValueError, match="num_valid must lie in"):
        digits.build({**spec, "num_valid": 0})


def _scipy_frechet(f1: np.ndarray, f2: np.ndarray) -> float:
    mu1, mu2 = f1.mean(0), f2.mean(0)
    c1, c2 = np.cov(f1, rowvar=False), np.cov(f2, rowvar=False)
    covmean = scipy.linalg.sqrtm(c1 @ c2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(c1 + c2 - 2 * covmean))


def test_digits_fid_equals_scipy_on_the_same_features():
    """torchmetrics' FID through the registered extractor = scipy's Fréchet distance of its features
    (relative 1e-6: both in float64; sqrtm differs in the last digits); identical sets give ~0."""
    torch.manual_seed(0)
    net = DigitsClassifier().double().eval()  # random weights: the formula, not the features, is tested
    g = torch.Generator().manual_seed(0)
    a = torch.randint(0, 17, (200, 64), generator=g)
    b = torch.randint(0, 9, (150, 64), generator=g) * 2
    fid = frechet_distance(a, b, net, (1, 8, 8), 17)
    with torch.no_grad():
        fa, fb = net(a).numpy(), net(b).numpy()
    assert fid == pytest.approx(_scipy_frechet(fa, fb), rel=1e-6)
    assert abs(frechet_distance(a, a, net, (1, 8, 8), 17)) < 1e-6


def test_fid_refuses_bad_images_and_unknown_extractors(tmp_path):
    net = DigitsClassifier().eval()
    good = torch.zeros(4, 64, dtype=torch.long)
    with pytest.raises(ValueError, match=r"samples: pixels must lie in \[0, 17\), got \[17, 17\]"):
        frechet_distance(torch.full((4, 64), 17), good, net, (1, 8, 8), 17)
    with pytest.raises(ValueError, match=r"reference: expected integer images \[N, 64\]"):
        frechet_distance(good, torch.zeros(4, 63, dtype=torch.long), net, (1, 8, 8), 17)
    with pytest.raises(ValueError, match="at least 2 images per set"):
        frechet_distance(good[:1], good, net, (1, 8, 8), 17)
    with pytest.raises(ValueError, match="unknown feature extractor 'vgg'"):
        load_extractor("vgg")
    with pytest.raises(FileNotFoundError, match="set metrics.inception_path=FILE"):
        load_extractor("inception", str(tmp_path / "missing.pth"))
    with pytest.raises(ValueError, match="must be integer pixels"):
        net(torch.zeros(2, 64))


def test_gaussian_reverse_rates_equal_dense_loops():
    """R̂(x → x with x_l ← y) = dσ̄/dt Q[y, x_l] Σ_{x0} p(x0 | x)_l P[x0, y] / P[x0, x_l], looped by hand."""
    S, L = 5, 3
    kernel = GaussianTarget(S, rate_sigma=1.5, Q_sigma=2.0)
    proc = ForwardProcess(Exponential(), kernel)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, S, (2, L), generator=g)
    t = torch.tensor([0.2, 0.2], dtype=torch.float64)
    probs = torch.softmax(torch.randn(2, L, S, generator=g, dtype=torch.float64), -1)
    rates = reverse_rates(ModelOutput("denoiser", probs), x, t, proc)
    P = kernel.transition(proc.sigma(t[:1]))[0].numpy()
    Q = kernel.rate_matrix().numpy()
    beta = float(proc.sigma_rate(t[:1])[0])
    for b in range(2):
        for l in range(L):
            xl = int(x[b, l])
            for y in range(S):
                want = 0.0 if y == xl else beta * Q[y, xl] * sum(
                    float(probs[b, l, x0]) * P[x0, y] / P[x0, xl] for x0 in range(S) if P[x0, xl] > 0)
                assert float(rates[b, l, y]) == pytest.approx(want, rel=1e-9, abs=1e-12)


def test_the_image_model_refuses_bad_pixels():
    """Pixels out of [0, S) or of a float dtype fail naming them, before the network runs."""
    data, proc, spec, arch, settings = tiny_image_training(1)
    from models.tauldr import TauLDRImageNet, TauLDRModel, UNetConfig

    model = TauLDRModel(TauLDRImageNet(UNetConfig(S=5, **arch)), proc)
    t = torch.full((2,), 0.5, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"states must lie in \[0, 5\), got \[0, 40\]"):
        model(torch.tensor([[0] * 15 + [40]] * 2), t)
    with pytest.raises(ValueError, match="x must be integer states"):
        model(torch.zeros(2, 16), t)
    assert model(data[:2], t).values.shape == (2, 16, 5)


def test_gaussian_reverse_rates_of_the_exact_denoiser_are_the_true_reverse_rates():
    """Pixels drawn independently from p0: the exact denoiser is p(x0 | x) ∝ p0(x0) P[x0, x], and the true
    reverse rate is dσ̄/dt Q[y, x] q_t(y) / q_t(x) with q_t = p0 P (time reversal of a CTMC), computed
    here without the denoiser."""
    S = 7
    kernel = GaussianTarget(S, rate_sigma=1.5, Q_sigma=3.0)
    proc = ForwardProcess(Exponential(), kernel)
    p0 = torch.softmax(torch.randn(S, generator=torch.Generator().manual_seed(3), dtype=torch.float64), 0)
    t = torch.full((1,), 0.15, dtype=torch.float64)
    P = kernel.transition(proc.sigma(t))[0]
    q_t = p0 @ P
    x = torch.arange(S).reshape(1, S)  # every state once
    posterior = (p0[:, None] * P).T  # [x, x0] ∝ p0(x0) P[x0, x]
    posterior = (posterior / posterior.sum(1, keepdim=True)).unsqueeze(0)
    rates = reverse_rates(ModelOutput("denoiser", posterior), x, t, proc)[0]  # [x, y]
    beta = float(proc.sigma_rate(t)[0])
    Q = kernel.rate_matrix()
    true = beta * Q.T * q_t[None, :] / q_t[:, None]  # [x, y] = β Q[y, x] q_t(y) / q_t(x)
    true.fill_diagonal_(0.0)
    assert torch.allclose(rates, true, rtol=1e-6, atol=1e-12)


def tiny_image_training(steps: int, **over):
    proc = ForwardProcess(Exponential(), GaussianTarget(5, rate_sigma=1.5, Q_sigma=2.0))
    g = torch.Generator().manual_seed(0)
    base = torch.tensor([[0, 4, 4, 0], [4, 0, 0, 4], [0, 4, 4, 0], [4, 0, 0, 4]]).reshape(1, 16)
    data = torch.cat([base, 4 - base]).repeat(16, 1)  # two 4 × 4 patterns, 5 levels
    data = torch.where(torch.rand(data.shape, generator=g) < 0.05, 2, data)
    spec = {"noise": {"name": "exponential", "time_base": 3.0, "time_exponential": 100.0},
            "kernel": {"name": "gaussian", "num_states": 5, "rate_sigma": 1.5, "Q_sigma": 2.0}}
    arch = {"shape": [1, 4, 4], "ch": 8, "num_res_blocks": 1, "ch_mult": [1, 2], "scale_count_to_put_attn": 1,
            "data_min_max": [0, 4], "dropout": 0.0, "time_embed_dim": 8}
    settings = {"steps": steps, "batch_size": 16, "lr": 3e-3, "weight_decay": 0.0, "warmup": 1, "grad_clip": 1.0,
                "ema": 0.9, "t_min": 0.01, "seed": 0, "bf16": False, "log_every": 1, "ckpt_every": steps,
                "objective": "ct_elbo", "nll_weight": 0.001, **over}
    return data, proc, spec, arch, settings


def _denoising_nll(directory, data, t: float) -> float:
    """−log p(x0 | x_t) per pixel of exported weights at one time, on fixed draws."""
    model = load_tauldr_project(directory)
    tt = torch.full((len(data),), t, dtype=torch.float64)
    x_t = model.process.sample(data, tt, torch.Generator().manual_seed(7))
    probs = model(x_t, tt).values.double()
    return float(-probs.gather(-1, data.unsqueeze(-1)).clamp_min(1e-12).log().mean())


@pytest.mark.slow
def test_tauldr_training_learns_the_denoiser_and_resumes_bit_identically(tmp_path):
    """tauLDR's loss is dominated by terms the network cannot change (its held-out value moves in the
    sixth digit), so learning is checked where it shows: p(x0 | x_t) at t = 0.1 after 40 steps against
    after 1 step (the same fixed draws)."""
    data, proc, spec, arch, settings = tiny_image_training(40)
    train(data, proc, spec, arch, {**settings, "steps": 1, "ckpt_every": 1}, tmp_path / "w0", tmp_path / "c0", "test",
          progress=False)
    train(data, proc, spec, arch, settings, tmp_path / "w1", tmp_path / "c1", "test", progress=False)
    assert _denoising_nll(tmp_path / "w1", data, 0.1) < 0.95 * _denoising_nll(tmp_path / "w0", data, 0.1)
    data, proc, spec, arch, settings = tiny_image_training(4, ckpt_every=2)
    train(data, proc, spec, arch, settings, tmp_path / "w2", tmp_path / "c2", "test", progress=False)
    train(data, proc, spec, arch, {**settings, "steps": 2}, tmp_path / "w3", tmp_path / "c3", "test", progress=False)
    train(data, proc, spec, arch, settings, tmp_path / "w3", tmp_path / "c3", "test", progress=False)
    assert (tmp_path / "w2" / "model.safetensors").read_bytes() == (tmp_path / "w3" / "model.safetensors").read_bytes()
    note = json.loads((tmp_path / "w3" / "training.json").read_text())
    assert note["steps"] == 4 and (tmp_path / "w3" / "config.yaml").read_text().startswith("format: jys-tauldr")
