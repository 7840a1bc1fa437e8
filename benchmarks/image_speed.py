"""Speed of the image models and memory of the Gaussian-kernel reverse rates, on this CPU.

    python benchmarks/image_speed.py

- forward of the published-size tauLDR CIFAR-10 UNet (random weights, 35.7 M parameters) at batch 8;
- forward of the digits model (weights/digits-tauldr) at batch 256;
- the reverse rates of a denoising model under tauLDR's Gaussian kernel at S = 256, L = 3,072, batch 8
  (ratios p(x0|x)/P[x0, x] times the S × S transition matrix, then the rates), its time and peak memory
  beyond its inputs, in units of B·L·S·8 bytes (one float64 [B, L, S] tensor). Each in a fresh process.
"""
from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(fn, repeats: int) -> float:
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def measure(kind: str) -> dict:
    import torch

    from models.kernels import GaussianTarget
    from models.noise import Exponential
    from models.process import ForwardProcess
    from models.protocol import ModelOutput, reverse_rates
    from models.tauldr import TauLDRImageNet, UNetConfig
    from models.tauldr_loaders import load_tauldr_project

    torch.set_num_threads(2)
    torch.manual_seed(0)
    if kind == "cifar_unet":
        net = TauLDRImageNet(UNetConfig()).eval()
        x = torch.randint(0, 256, (8, 3072))
        t = torch.full((8,), 0.5)
        with torch.no_grad():
            s = timed(lambda: net(x, t), 2)
        return {"what": "tauLDR CIFAR-10 UNet forward, batch 8, fp32", "seconds": round(s, 3),
                "images_per_s": round(8 / s, 2)}
    if kind == "digits_unet":
        model = load_tauldr_project(ROOT / "weights/digits-tauldr")
        x = torch.randint(0, 17, (256, 64))
        t = torch.full((256,), 0.3, dtype=torch.float64)
        s = timed(lambda: model(x, t), 5)
        return {"what": "digits UNet forward, batch 256, fp32", "seconds": round(s, 4), "images_per_s": round(256 / s)}
    if kind == "gaussian_rates":
        B, L, S = 8, 3072, 256
        proc = ForwardProcess(Exponential(), GaussianTarget(S, rate_sigma=6.0, Q_sigma=512.0))
        x = torch.randint(0, S, (B, L))
        t = torch.full((B,), 0.3, dtype=torch.float64)
        probs = torch.softmax(torch.randn(B, L, S), -1)
        proc.kernel.transition(proc.sigma(t[:1]))  # the eigendecomposition is built once, before
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        t0 = time.perf_counter()
        rates = reverse_rates(ModelOutput("denoiser", probs), x, t, proc)
        seconds = time.perf_counter() - t0
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        unit = B * L * S * 8
        return {"what": f"Gaussian-kernel reverse rates, S {S}, L {L}, batch {B}", "seconds": round(seconds, 3),
                "peak_beyond_inputs_GB": round((peak - before) / 1e9, 2), "units_of_BLS_float64": round((peak - before) / unit, 2),
                "rates_shape": list(rates.shape)}
    raise ValueError(kind)


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--one":
        print(json.dumps(measure(sys.argv[2])))
        return
    from results.bench import BenchTable  # here: each measuring process starts without it

    table = BenchTable("image_speed", ["what", "time", "throughput / memory"], "fp32, 2 threads, each in a fresh process.")
    for kind in ("cifar_unet", "digits_unet", "gaussian_rates"):
        out = subprocess.run([sys.executable, __file__, "--one", kind], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        if kind == "gaussian_rates":
            cost = (f"{r['peak_beyond_inputs_GB']} GB beyond the inputs ({r['units_of_BLS_float64']} float64 [B, L, S] "
                    f"tensors)")
        else:
            cost = f"{r['images_per_s']} images/s"
        table.row(r["what"], f"{r['seconds']} s", cost)
    table.save()


if __name__ == "__main__":
    main()
