"""tauLDR's Lakh piano rolls (the paper's music data), read from a local copy: DIR/train.npy and
DIR/test.npy as the published `LakhPianoroll` dataset holds them, integer arrays [N, 256] of MIDI
pitches 0-127 and 128 for rest (S = 129). Nothing is built here: the data cannot be downloaded
on this machine; `build` checks the files and names what is wrong.

Registry interface (data/__init__.py): spec = experiment.data with keys dir, length. Splits: train
(train.npy) and valid (test.npy, the songs whose first two bars the paper conditions on).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from data import take_rows

STATES = 129
FILES = {"train": "train.npy", "valid": "test.npy"}


def vocab(spec: dict) -> int:
    return STATES


def length(spec: dict) -> int:
    return int(spec["length"])


def build(spec: dict) -> dict[str, Path]:
    if not spec.get("dir"):
        raise ValueError("experiment.data.dir is not set: point it at the directory holding tauLDR's Lakh piano "
                         "rolls (train.npy, test.npy), e.g. experiment.data.dir=/data/pianoroll")
    paths = {split: Path(spec["dir"]) / name for split, name in FILES.items()}
    for split, path in paths.items():
        if not path.is_file():
            raise FileNotFoundError(f"no {path} ({split} split of the Lakh piano rolls); the music experiment's "
                                    f"paper preset needs tauLDR's train.npy and test.npy in experiment.data.dir")
        x = np.load(path, mmap_mode="r")
        if x.ndim != 2 or x.shape[1] != length(spec):
            raise ValueError(f"{path} holds an array of shape {x.shape}, expected [N, {length(spec)}]")
        if x.size and (x.min() < 0 or x.max() >= STATES):
            raise ValueError(f"{path} holds values in [{x.min()}, {x.max()}], expected pitches 0-127 and rest 128")
    return paths


def size(spec: dict, split: str = "train") -> int:
    return int(np.load(_path(spec, split), mmap_mode="r").shape[0])


def load(spec: dict, split: str = "train", rows: torch.Tensor | None = None) -> torch.Tensor:
    return take_rows(np.load(_path(spec, split), mmap_mode="r"), rows, f"sequences of the piano-roll {split} split")


def _path(spec: dict, split: str) -> Path:
    if split not in FILES:
        raise ValueError(f"unknown piano-roll split {split!r}; expected one of {tuple(FILES)}")
    return build(spec)[split]
