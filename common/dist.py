"""Several processes with PyTorch's own launcher: `torchrun --nproc_per_node=P -m samplers|jys|train ...`.

torchrun sets WORLD_SIZE, RANK and LOCAL_RANK; without them (a plain `python -m ...`) every function here
is the single-process identity and nothing is initialized. One process group serves both kinds of
tensors: gloo for CPU tensors (samples, KLUB sums: the samplers and the search stay on the CPU) and, where
each rank has a GPU, NCCL for CUDA tensors (DistributedDataParallel's gradients).

Caches (a samples file that holds the same samples, a search's saved levels) are read by every rank: the ranks
must share one file system (one node, or a shared runs_dir).

Work is split by whole units (sampling batches, KLUB model-call batches) whose boundaries do not depend
on the number of processes: unit k runs on rank k mod P, and a result is put back in unit order, so a
run's output is the same for any P.
"""
from __future__ import annotations

import functools
import os
import sys
import traceback

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def is_main() -> bool:
    return rank() == 0


def init() -> None:
    """Join the process group that torchrun set up (a no-op outside torchrun or when joined already).
    NCCL serves CUDA tensors only when every local rank has a GPU of its own; otherwise gloo alone (the
    samplers and the search stay on the CPU anyway; a network on CUDA then needs as many GPUs as ranks)."""
    if dist.is_initialized() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return
    if gpu_per_rank():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="cpu:gloo,cuda:nccl")
    else:
        dist.init_process_group(backend="gloo")


def gpu_per_rank() -> bool:
    """Every process of this node can have a CUDA device of its own."""
    local = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1")))
    return torch.cuda.is_available() and torch.cuda.device_count() >= local


def exit_on_error(main):
    """Under torchrun, an error on one rank ends its process at once: Hydra's multirun would otherwise go on
    to the next job, whose collectives then pair with another job's on the other ranks (a hang). torchrun
    sees the exit and stops the others. A single process raises as usual."""
    @functools.wraps(main)
    def run(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except Exception:
            if world_size() == 1:
                raise
            traceback.print_exc()
            sys.stderr.flush()
            os._exit(1)
    return run


def local_device(device: torch.device) -> torch.device:
    """A CUDA device under torchrun is this rank's own GPU (LOCAL_RANK); others pass through. Several ranks
    on one GPU are refused (NCCL cannot pair them)."""
    if device.type == "cuda" and dist.is_initialized():
        if not gpu_per_rank():
            raise ValueError(f"device {device} under torchrun with {os.environ.get('LOCAL_WORLD_SIZE')} processes "
                             f"on this node but {torch.cuda.device_count()} GPU(s): run as many processes as GPUs, "
                             "or device=cpu")
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def mine(k: int) -> bool:
    """Unit k runs on this rank."""
    return k % world_size() == rank()


def sum_disjoint(t: torch.Tensor) -> torch.Tensor:
    """The element-wise sum over ranks of a CPU tensor of which each rank filled its own entries and left
    the rest 0: x + 0 = x exactly, so the result is bit-identical to one process filling all of it."""
    if world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def mean_float(v: float) -> float:
    """The mean over ranks of one number per rank."""
    if world_size() == 1:
        return v
    t = torch.tensor([v], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return float(t) / world_size()


def any_true(flag: bool) -> bool:
    """True on every rank when it is true on one (a decision all ranks must take together)."""
    if world_size() == 1:
        return flag
    t = torch.tensor([int(flag)], dtype=torch.int64)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t)


def gather_units(units: dict[int, object], count: int) -> list | None:
    """Rank 0 receives every rank's {unit index: result} and returns the results of units 0 … count − 1 in
    order; other ranks return None."""
    if world_size() == 1:
        return [units[k] for k in range(count)]
    parts = [None] * world_size() if is_main() else None
    dist.gather_object(units, parts, dst=0)
    if not is_main():
        return None
    merged = {k: v for part in parts for k, v in part.items()}
    missing = [k for k in range(count) if k not in merged]
    if missing:
        raise RuntimeError(f"units {missing[:5]} of {count} came back from no rank")
    return [merged[k] for k in range(count)]


def barrier() -> None:
    if world_size() > 1:
        dist.barrier()


def finish() -> None:
    """Leave the process group (end of a torchrun job)."""
    if dist.is_initialized():
        dist.destroy_process_group()


def resolve_device(name: str) -> torch.device:
    """`device`: cpu, cuda (or cuda:<index>), or auto (cuda when torch sees a GPU, else cpu)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and not str(name).startswith("cuda"):
        raise ValueError(f"unknown device {name!r}; expected cpu, cuda, cuda:<index> or auto")
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but torch sees no CUDA GPU; use device=cpu or device=auto")
    return torch.device(name)
