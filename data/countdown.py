"""CountDown sequences from a seed, as files under datasets/count/ (train and held-out splits).

Registry interface (data/__init__.py): spec = experiment.data with keys dir, num_train, num_valid,
seed, length, vocab. The file-level functions below it (write_splits, read_split) take plain arguments.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from common.io import atomic_write_bytes
from data import take_rows
from models.chains import countdown_chain

SPLITS = ("train", "valid")


def vocab(spec: dict) -> int:
    return int(spec["vocab"])


def length(spec: dict) -> int:
    return int(spec["length"])


def build(spec: dict) -> dict[str, Path]:
    return write_splits(Path(spec["dir"]), int(spec["num_train"]), int(spec["num_valid"]), length(spec),
                        vocab(spec), int(spec["seed"]))


def size(spec: dict, split: str = "train") -> int:
    return int(np.load(_split_path(spec, split), mmap_mode="r").shape[0])


def load(spec: dict, split: str = "train", rows: torch.Tensor | None = None) -> torch.Tensor:
    return read_split(_split_path(spec, split), vocab(spec), length(spec), rows)


def _split_path(spec: dict, split: str) -> Path:
    if split not in SPLITS:
        raise ValueError(f"unknown CountDown split {split!r}; expected one of {SPLITS}")
    return build(spec)[split]


def write_splits(out_dir: str | Path, num_train: int, num_valid: int, length: int = 256, vocab: int = 32,
                 seed: int = 0) -> dict[str, Path]:
    """Write train.npy and valid.npy (uint8 [N, length]) unless they exist. An existing file of
    another shape is an error, never overwritten."""
    out_dir = Path(out_dir)
    paths = {}
    chain = countdown_chain(vocab)
    for split, n, offset in (("train", num_train, 0), ("valid", num_valid, 1)):
        path = out_dir / f"{split}.npy"
        if path.is_file():
            shape = np.load(path, mmap_mode="r").shape
            if shape != (n, length):
                raise ValueError(f"{path} holds sequences of shape {shape}, but ({n}, {length}) were asked for; "
                                 f"move it away or choose another experiment.data.dir")
            paths[split] = path
            continue
        g = torch.Generator().manual_seed(seed * 2 + offset)
        x = chain.sample(n, length, g).numpy().astype(np.uint8)
        buf = io.BytesIO()
        np.save(buf, x)
        paths[split] = atomic_write_bytes(path, buf.getvalue())
    return paths


def read_split(path: str | Path, vocab: int, length: int, rows: torch.Tensor | None = None) -> torch.Tensor:
    """The split's sequences [N, length] as int64, or only the given rows (in their order)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset file {str(path)!r} does not exist; build it with data.countdown.write_splits")
    x = take_rows(np.load(path, mmap_mode="r"), rows, f"sequences of {path}")
    if x.ndim != 2 or x.shape[1] != length or x.min() < 0 or x.max() >= vocab:
        raise ValueError(f"{path}: expected [N, {length}] tokens in [0, {vocab}), got shape {tuple(x.shape)} "
                         f"with tokens in [{int(x.min())}, {int(x.max())}]")
    return x
