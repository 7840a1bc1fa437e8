"""Training: score entropy, AdamW with warmup, gradient clipping, EMA; resumable checkpoints.

The checkpoint (runs/train/<name>/checkpoint.pt) holds everything needed to continue bit for bit;
at every checkpoint the EMA weights are also exported to weights/<name>/ (model.safetensors,
config.yaml, training.json), so an interrupted run still leaves usable weights.
"""
from __future__ import annotations

import io
import json
import time
from pathlib import Path

import torch
import yaml
from safetensors.torch import save as save_safetensors
from tqdm import tqdm

from models.sedd import SEDD, SEDDConfig, check_scale_by_sigma
from pipeline.build import resolve_device
from pipeline.io import atomic_write_bytes, atomic_write_json
from train.losses import score_entropy


class EMA:
    """Exponential moving average with SEDD's warm-up: decay_n = min(decay, (1 + n)/(10 + n)).

    Without the warm-up, a short run keeps decay^n of its random initialization (27% after 1300
    steps at 0.999), and the averaged weights are useless."""

    def __init__(self, params, decay: float):
        self.decay = decay
        self.num_updates = 0
        self.shadow = [p.detach().clone() for p in params]

    @torch.no_grad()
    def update(self, params):
        self.num_updates += 1
        decay = min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))
        for s, p in zip(self.shadow, params):
            s.lerp_(p.detach(), 1 - decay)

    def copy_to(self, params):
        with torch.no_grad():
            for s, p in zip(self.shadow, params):
                p.copy_(s)


def export_weights(net: SEDD, ema: EMA, out_dir: Path, process_spec: dict, experiment: str, note: dict) -> None:
    """EMA weights as safetensors + config.yaml + training.json, each written atomically."""
    shadow = {name: s for (name, _), s in zip(net.named_parameters(), ema.shadow)}
    state = {k: (shadow[k] if k in shadow else v).detach().cpu().contiguous().clone() for k, v in net.state_dict().items()}
    atomic_write_bytes(out_dir / "model.safetensors", save_safetensors(state))
    config = {"format": "jys-sedd", "experiment": experiment, "network": net.config.to_dict(), "process": process_spec}
    atomic_write_bytes(out_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False).encode())
    atomic_write_json(out_dir / "training.json", note)


def _to_cpu(obj):
    """The same nesting of dicts, lists and tuples, with every tensor on the CPU (checkpoints load anywhere)."""
    if torch.is_tensor(obj):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def train(data: torch.Tensor, process, process_spec: dict, arch: dict, settings: dict, out_dir: Path,
          ckpt_dir: Path, experiment: str, progress: bool = True, device: str | torch.device = "cpu") -> dict:
    """Train a SEDD network on `data` [N, L]; returns the training note.

    device: cpu, cuda[:i] or auto (pipeline.build.resolve_device). The network, the optimizer state and
    the batches live there; x_t is drawn on the CPU from the seeded generator, so a run's data stream
    does not depend on the device. Checkpoints and exported weights hold CPU tensors."""
    s = settings
    device = device if isinstance(device, torch.device) else resolve_device(str(device))
    config = SEDDConfig(vocab_size=process.num_states, **arch)
    check_scale_by_sigma(config, process.kernel, source=f"training {experiment!r}")
    torch.manual_seed(s["seed"])
    net = SEDD(config).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=s["lr"], betas=(0.9, 0.999), weight_decay=s["weight_decay"])
    ema = EMA(net.parameters(), s["ema"])
    gen = torch.Generator().manual_seed(s["seed"] + 1)
    step, seen, elapsed, losses = 0, 0, 0.0, []
    ckpt = ckpt_dir / "checkpoint.pt"
    if ckpt.is_file():
        state = torch.load(ckpt, map_location="cpu", weights_only=False)
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])  # moves its state to the parameters' device
        ema.shadow, ema.num_updates = [t.to(device) for t in state["ema"]], state["ema_updates"]
        gen.set_state(state["gen"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        step, seen, elapsed, losses = state["step"], state["seen"], state["elapsed"], state["losses"]
        print(f"resuming training from {ckpt} at step {step}")
    L = data.shape[1]
    net.train()
    bar = tqdm(total=s["steps"], initial=step, desc="train", disable=not progress)
    window = []
    start = time.time() - elapsed
    while step < s["steps"]:
        idx = torch.randint(0, data.shape[0], (s["batch_size"],), generator=gen)
        x0 = data[idx]
        t = (1 - s["t_min"]) * torch.rand(s["batch_size"], generator=gen, dtype=torch.float64) + s["t_min"]
        x_t = process.sample(x0, t, gen)
        x0, t, x_t = x0.to(device), t.to(device), x_t.to(device)
        lr = s["lr"] * min(1.0, (step + 1) / s["warmup"])
        for group in opt.param_groups:
            group["lr"] = lr
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=s["bf16"]):
            log_score = net(x_t, process.sigma(t).float(), bf16=s["bf16"])  # else its blocks turn autocast off
        loss = score_entropy(log_score.float(), x_t, x0, t, process).mean() / L
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), s["grad_clip"])
        opt.step()
        ema.update(net.parameters())
        step += 1
        seen += s["batch_size"]
        window.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{sum(window[-50:]) / len(window[-50:]):.4f}", lr=f"{lr:.1e}")
        if step % s["log_every"] == 0:
            losses.append([step, sum(window) / len(window)])
            window = []
        if step % s["ckpt_every"] == 0 or step == s["steps"]:
            elapsed = time.time() - start
            note = {"steps": step, "samples_seen": seen, "wall_time_s": round(elapsed, 1),
                    "final_loss_per_token": losses[-1][1] if losses else None, "loss_curve": losses,
                    "settings": s, "threads": torch.get_num_threads(), "device": str(device)}
            buf = io.BytesIO()
            torch.save(_to_cpu({"net": net.state_dict(), "opt": opt.state_dict(), "ema": ema.shadow,
                                "ema_updates": ema.num_updates, "gen": gen.get_state(), "torch_rng": torch.get_rng_state(),
                                "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                                "step": step, "seen": seen, "elapsed": elapsed, "losses": losses}), buf)
            atomic_write_bytes(ckpt, buf.getvalue())
            export_weights(net, ema, out_dir, process_spec, experiment, note)
    bar.close()
    return json.loads((out_dir / "training.json").read_text())

