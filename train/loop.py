"""Training: score entropy, AdamW with warmup, gradient clipping, EMA; resumable checkpoints.

The checkpoint (runs/train/<name>/checkpoint.pt) holds everything needed to continue bit for bit;
at every checkpoint the EMA weights are also exported to weights/<name>/ (model.safetensors,
config.yaml, training.json), so an interrupted run still leaves usable weights.

Several processes (`torchrun --nproc_per_node=P -m train ...`): DistributedDataParallel. Every rank draws
the same global batch from the seeded stream and trains on its own contiguous share of it (batch_size / P
sequences), so the gradients DDP averages are those of the global batch and the loss curve is the one
process's (to rounding; a network with dropout draws other masks). Rank 0 writes checkpoints and
weights; a run resumes with any P, since the checkpoint holds the global stream.
"""
from __future__ import annotations

import io
import json
import time
from copy import deepcopy
from pathlib import Path

import torch
from safetensors.torch import load_file as load_safetensors

from common import dist
from common.io import atomic_write_bytes
from common.progress import progress as progress_bar
from train.objectives import OBJECTIVES, make_objective


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


def ema_copy(net: torch.nn.Module, ema: EMA) -> torch.nn.Module:
    """A copy of the network holding the EMA weights (and the live network's buffers), in eval mode."""
    copy = deepcopy(net)
    ema.copy_to(copy.parameters())
    return copy.eval()


def export_weights(net: torch.nn.Module, ema: EMA, out_dir: Path, process_spec: dict, experiment: str, note: dict,
                   objective: str = "score_entropy") -> None:
    """The EMA weights in the objective's project format (model.safetensors, config.yaml, training.json),
    each written atomically."""
    OBJECTIVES[objective].export(ema_copy(net, ema), Path(out_dir), process_spec, experiment, note)


def _to_cpu(obj):
    """The same nesting of dicts, lists and tuples, with every tensor on the CPU (checkpoints load anywhere)."""
    if torch.is_tensor(obj):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


class HeldOutLoss:
    """The objective's loss of the EMA weights on a fixed held-out batch: the same sequences, times and
    network inputs at every evaluation (drawn once from their own seed), so the curve shows over-fitting,
    not noise. Per token for score entropy, per sequence for the ELBO (each objective's training scale)."""

    def __init__(self, valid: torch.Tensor, objective, size: int, batch_size: int, t_min: float, seed: int):
        gen = torch.Generator().manual_seed(seed)
        size = min(size, valid.shape[0])
        self.x0 = valid[torch.randperm(valid.shape[0], generator=gen)[:size]]
        self.t = (1 - t_min) * torch.rand(size, generator=gen, dtype=torch.float64) + t_min
        self.inputs = objective.inputs(self.x0, self.t, gen)
        self.objective, self.batch_size = objective, batch_size

    @torch.no_grad()
    def __call__(self, eval_net, device: torch.device) -> float:
        total = 0.0
        for i in range(0, self.x0.shape[0], self.batch_size):
            x0, t = self.x0[i:i + self.batch_size].to(device), self.t[i:i + self.batch_size].to(device)
            inputs = {k: v[i:i + self.batch_size].to(device) for k, v in self.inputs.items()}
            total += self.objective.loss(eval_net, x0, t, inputs).item() * x0.shape[0]
        return total / self.x0.shape[0]


def learning_rate(settings: dict, step: int, first_step: int = 0) -> float:
    """The rate of the step after `step`: linear warm-up over `warmup` steps from the optimizer's first step (0, or the
    step a warm start began at), then constant."""
    return settings["lr"] * min(1.0, (step - first_step + 1) / settings["warmup"])


def warm_start(net: torch.nn.Module, ema: EMA, gen: torch.Generator, init: Path, device: torch.device):
    """Load weights a run exported (model.safetensors, training.json) into the network and its EMA, for a
    run whose checkpoint is gone: the optimizer's moments are not in the export, so the caller warms a fresh
    one up again. Returns (step, seen, elapsed, losses, valid_curve) of the exported run, so the curves go
    on from its last step; the data stream is reseeded with that step (a new stream, not a replay)."""
    note_file, weights = init / "training.json", init / "model.safetensors"
    if not (note_file.is_file() and weights.is_file()):
        raise FileNotFoundError(f"train.init_from={str(init)!r} needs model.safetensors and training.json there "
                                f"(weights a run exported); found {sorted(p.name for p in init.glob('*'))}")
    note = json.loads(note_file.read_text())
    net.load_state_dict(load_safetensors(weights, device=str(device)))
    ema.shadow = [p.detach().clone() for p in net.parameters()]
    ema.num_updates = int(note["steps"])  # past SEDD's EMA warm-up: the loaded weights are already averaged
    gen.manual_seed(int(gen.initial_seed()) + int(note["steps"]))
    return (int(note["steps"]), int(note["samples_seen"]), float(note["wall_time_s"]),
            [list(x) for x in note.get("loss_curve", [])], [list(x) for x in note.get("valid_curve", [])])


def train(data: torch.Tensor, process, process_spec: dict, arch: dict, settings: dict, out_dir: Path,
          ckpt_dir: Path, experiment: str, progress: bool = True, device: str | torch.device = "cpu",
          valid: torch.Tensor | None = None) -> dict:
    """Train the network of settings' objective (train/objectives.py; score_entropy when absent) on
    `data` [N, L]; returns the training note.

    device: cpu, cuda[:i] or auto (common.dist.resolve_device). The network, the optimizer state and
    the batches live there; x_t is drawn on the CPU from the seeded generator, so a run's data stream
    does not depend on the device. Checkpoints and exported weights hold CPU tensors.
    valid: held-out sequences; with settings' valid_every > 0, the EMA weights' loss on valid_size of
    them is recorded every valid_every steps (training.json's valid_curve).
    settings' init_from (optional): a folder of exported weights to continue when there is no checkpoint.
    settings' max_minutes (optional): stop, checkpoint and export at the first step past this wall time
    of the run (a lease of fixed length); the next call resumes."""
    s = settings
    valid_every = int(s.get("valid_every") or 0)
    if valid_every and valid is None:
        raise ValueError(f"valid_every={valid_every} asks for a held-out loss, but no held-out data was given")
    device = dist.local_device(device if isinstance(device, torch.device) else dist.resolve_device(str(device)))
    world, rank = dist.world_size(), dist.rank()
    if s["batch_size"] % world:
        raise ValueError(f"train.batch_size={s['batch_size']} must be a multiple of the {world} processes "
                         "(each trains on an equal share of the global batch)")
    share = slice(rank * s["batch_size"] // world, (rank + 1) * s["batch_size"] // world)
    objective = make_objective(s.get("objective") or "score_entropy", process, s)
    torch.manual_seed(s["seed"])
    net = objective.build(arch, source=f"training {experiment!r}").to(device)
    trained = net if world == 1 else torch.nn.parallel.DistributedDataParallel(
        net, device_ids=[device.index] if device.type == "cuda" else None)
    opt = torch.optim.AdamW(net.parameters(), lr=s["lr"], betas=(0.9, 0.999), weight_decay=s["weight_decay"])
    ema = EMA(net.parameters(), s["ema"])
    gen = torch.Generator().manual_seed(s["seed"] + 1)
    step, seen, elapsed, losses, valid_curve, first_step = 0, 0, 0.0, [], [], 0
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
        valid_curve = state.get("valid_curve", [])
        first_step = state.get("first_step", 0)
        print(f"resuming training from {ckpt} at step {step}")
    elif s.get("init_from"):
        step, seen, elapsed, losses, valid_curve = warm_start(net, ema, gen, Path(s["init_from"]), device)
        first_step = step  # the fresh optimizer is warmed up again from here
        if step >= s["steps"]:
            raise ValueError(f"train.init_from={s['init_from']!r} holds {step} steps already; train.steps={s['steps']} "
                             "must exceed that to train on")
        print(f"no checkpoint at {ckpt}: continuing the exported weights of {s['init_from']} from their step {step} "
              f"(a fresh optimizer, warmed up again over {s['warmup']} steps)")
    net.train()
    main = dist.is_main()
    bar = progress_bar(total=s["steps"], initial=step, desc="train", enabled=progress and main)
    held_out = HeldOutLoss(valid, objective, int(s.get("valid_size") or 512), s["batch_size"] // world, s["t_min"],
                           s["seed"] + 2) if valid_every else None
    deadline = time.time() + 60 * float(s["max_minutes"]) if s.get("max_minutes") is not None else None
    window = []
    start = time.time() - elapsed
    while step < s["steps"]:
        idx = torch.randint(0, data.shape[0], (s["batch_size"],), generator=gen)
        x0 = data[idx]
        t = (1 - s["t_min"]) * torch.rand(s["batch_size"], generator=gen, dtype=torch.float64) + s["t_min"]
        inputs = {k: v[share].to(device) for k, v in objective.inputs(x0, t, gen).items()}
        x0, t = x0[share].to(device), t[share].to(device)
        lr = learning_rate(s, step, first_step)
        for group in opt.param_groups:
            group["lr"] = lr
        loss = objective.loss(trained, x0, t, inputs, bf16=s["bf16"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), s["grad_clip"])
        opt.step()
        ema.update(net.parameters())
        step += 1
        seen += s["batch_size"]
        window.append(dist.mean_float(loss.item()))  # the global batch's loss: the mean of equal shares
        bar.update(1)
        bar.set_postfix(loss=f"{sum(window[-50:]) / len(window[-50:]):.4f}", lr=f"{lr:.1e}")
        if step % s["log_every"] == 0:
            losses.append([step, sum(window) / len(window)])
            window = []
        if valid_every and step % valid_every == 0 and main:
            valid_curve.append([step, held_out(ema_copy(net, ema), device)])
            bar.write(f"step {step}: held-out loss {valid_curve[-1][1]:.4f}")
        out_of_time = deadline is not None and dist.any_true(time.time() > deadline)  # every rank stops together
        if (step % s["ckpt_every"] == 0 or step == s["steps"] or out_of_time) and main:
            elapsed = time.time() - start
            note = {"steps": step, "samples_seen": seen, "wall_time_s": round(elapsed, 1),
                    "final_loss_per_token": losses[-1][1] if losses else None, "loss_curve": losses,
                    "valid_curve": valid_curve, "optimizer_started_at": first_step,
                    "settings": s, "threads": torch.get_num_threads(), "device": str(device), "world_size": world}
            buf = io.BytesIO()
            torch.save(_to_cpu({"net": net.state_dict(), "opt": opt.state_dict(), "ema": ema.shadow,
                                "ema_updates": ema.num_updates, "gen": gen.get_state(), "torch_rng": torch.get_rng_state(),
                                "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                                "step": step, "seen": seen, "elapsed": elapsed, "losses": losses,
                                "valid_curve": valid_curve, "first_step": first_step}), buf)
            atomic_write_bytes(ckpt, buf.getvalue())
            objective.export(ema_copy(net, ema), out_dir, process_spec, experiment, note)
        if out_of_time:
            bar.write(f"stopping at step {step}: past max_minutes={s['max_minutes']}; run again to resume")
            break
    bar.close()
    dist.barrier()  # rank 0's last export is complete before any rank reads it
    return json.loads((out_dir / "training.json").read_text())

