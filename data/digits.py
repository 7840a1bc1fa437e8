"""scikit-learn's handwritten digits (1,797 images of 8 × 8 pixels, 17 gray levels 0-16) as
files under datasets/digits/: the embedded stand-in for CIFAR-10 (tauLDR's image experiment).

An image is a sequence of L = 64 tokens in [0, 17), row-major (CHW with one channel, as tauLDR
flattens images). The held-out split is a fixed seeded draw of num_valid images; the rest train.
Files: {train,valid}.npy (uint8 [N, 64]) and {train,valid}_labels.npy (the digit, for the
feature extractor of digits-FID), written atomically, never over files of another shape.

Registry interface (data/__init__.py): spec = experiment.data with keys dir, num_valid, seed.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch

from common.io import atomic_write_bytes
from data import take_rows

SPLITS = ("train", "valid")
LEVELS = 17  # sklearn's digits: 4 × 4 blocks of a 32 × 32 bitmap, counted: 0..16
SHAPE = (1, 8, 8)
TOTAL = 1797


def vocab(spec: dict) -> int:
    return LEVELS


def length(spec: dict) -> int:
    return int(np.prod(SHAPE))


def build(spec: dict) -> dict[str, Path]:
    """{split: images .npy}; writes what is missing. Labels sit beside them (`labels`)."""
    out_dir = Path(spec["dir"])
    num_valid = int(spec["num_valid"])
    if not 0 < num_valid < TOTAL:
        raise ValueError(f"experiment.data.num_valid must lie in (0, {TOTAL}), got {num_valid}")
    sizes = {"train": TOTAL - num_valid, "valid": num_valid}
    paths = {split: out_dir / f"{split}.npy" for split in SPLITS}
    files = {**paths, **{f"{s}_labels": out_dir / f"{s}_labels.npy" for s in SPLITS}}
    if all(p.is_file() for p in files.values()):
        for split in SPLITS:
            _check_shape(paths[split], (sizes[split], length(spec)))
            _check_shape(files[f"{split}_labels"], (sizes[split],))
        return paths
    images, labels = _sklearn_digits()
    order = np.random.default_rng(int(spec["seed"])).permutation(TOTAL)
    parts = {"valid": np.sort(order[:num_valid]), "train": np.sort(order[num_valid:])}
    for split, idx in parts.items():
        _write_if_new(paths[split], images[idx])
        _write_if_new(files[f"{split}_labels"], labels[idx])
    return paths


def size(spec: dict, split: str = "train") -> int:
    return int(np.load(_split_path(spec, split), mmap_mode="r").shape[0])


def load(spec: dict, split: str = "train", rows: torch.Tensor | None = None) -> torch.Tensor:
    """The split's images [N, 64] int64 in [0, 17), or only the given rows (in their order)."""
    return take_rows(np.load(_split_path(spec, split)), rows, f"images of the digits {split} split")


def labels(spec: dict, split: str = "train") -> torch.Tensor:
    """The digit (0-9) of each image of a split [N] int64."""
    path = _split_path(spec, split)
    return torch.from_numpy(np.load(path.with_name(f"{split}_labels.npy")).astype(np.int64))


def _split_path(spec: dict, split: str) -> Path:
    if split not in SPLITS:
        raise ValueError(f"unknown digits split {split!r}; expected one of {SPLITS}")
    return build(spec)[split]


def _sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # ships the data: nothing is downloaded

    d = load_digits()
    images = d.images.reshape(TOTAL, -1)
    if images.shape != (TOTAL, 64) or images.min() < 0 or images.max() >= LEVELS or (images % 1).any():
        raise ValueError(f"sklearn's digits are not {TOTAL} images of 64 integer pixels in [0, {LEVELS})")
    return images.astype(np.uint8), d.target.astype(np.uint8)


def _check_shape(path: Path, shape: tuple) -> None:
    found = np.load(path, mmap_mode="r").shape
    if found != shape:
        raise ValueError(f"{path} holds an array of shape {found}, but {shape} was asked for; "
                         f"move it away or choose another experiment.data.dir")


def _write_if_new(path: Path, array: np.ndarray) -> None:
    if path.is_file():
        _check_shape(path, array.shape)
        return
    buf = io.BytesIO()
    np.save(buf, array)
    atomic_write_bytes(path, buf.getvalue())
