"""Fréchet distances of image samples through torchmetrics' FrechetInceptionDistance (a kept library,
never a hand-written Fréchet distance), with a registered feature extractor:

- digits: the digits classifier's 64 penultimate features (metrics/digits_features.py); the number is
  called digits-FID everywhere, never plain FID;
- inception: the standard 2048-feature Inception FID (torch-fidelity's network inside torchmetrics),
  for tauLDR's CIFAR-10 on a machine that has its weights file (`metrics.inception_path`).
The reference set is the experiment's training split, as in the paper's FID against the train set.
"""
from __future__ import annotations

from pathlib import Path

import torch

EXTRACTORS = ("digits", "inception")


def load_extractor(name: str, inception_path: str | None = None) -> torch.nn.Module | int:
    """A feature module for torchmetrics' `feature=` (digits), or 2048 with a checked weights file (inception)."""
    if name == "digits":
        from metrics.digits_features import load_classifier

        return load_classifier()
    if name == "inception":
        if not inception_path or not Path(inception_path).is_file():
            raise FileNotFoundError(
                f"the Inception FID needs torch-fidelity's Inception weights file (pt_inception-2015-12-05-*.pth): "
                f"set metrics.inception_path=FILE; got {inception_path!r}, which is not a file")
        return 2048
    raise ValueError(f"unknown feature extractor {name!r}; expected one of {list(EXTRACTORS)} "
                     f"(the metrics digits_fid and fid)")


def frechet_distance(samples: torch.Tensor, reference: torch.Tensor, extractor: torch.nn.Module | int,
                     image_shape: tuple[int, int, int], num_states: int, inception_path: str | None = None,
                     batch_size: int = 256) -> float:
    """FID between samples [N, L] and reference [M, L] (pixels in [0, num_states)), images of image_shape
    (C, H, W) flattened in CHW order. Both sets pass through the same extractor."""
    from torchmetrics.image.fid import FrechetInceptionDistance

    for name, x in (("samples", samples), ("reference", reference)):
        _check_images(name, x, image_shape, num_states)
    if len(samples) < 2 or len(reference) < 2:
        raise ValueError(f"a Fréchet distance needs at least 2 images per set, got {len(samples)} samples "
                         f"and {len(reference)} reference images")
    if isinstance(extractor, int):
        metric = FrechetInceptionDistance(feature=extractor, feature_extractor_weights_path=inception_path)
        to_input = lambda x: _to_uint8(x, image_shape, num_states)  # noqa: E731 (Inception takes uint8 RGB)
    else:
        metric = FrechetInceptionDistance(feature=extractor)
        to_input = lambda x: x  # noqa: E731 (the digits extractor takes the integer pixels)
    metric.set_dtype(torch.float64)
    with torch.no_grad():
        for x, real in ((reference, True), (samples, False)):
            for i in range(0, len(x), batch_size):
                metric.update(to_input(x[i:i + batch_size]), real=real)
        return float(metric.compute())


def _check_images(name: str, x: torch.Tensor, shape: tuple[int, int, int], num_states: int) -> None:
    length = shape[0] * shape[1] * shape[2]
    if x.ndim != 2 or x.shape[1] != length or x.dtype.is_floating_point:
        raise ValueError(f"{name}: expected integer images [N, {length}] (C·H·W for shape {list(shape)}), "
                         f"got {x.dtype} of shape {tuple(x.shape)}")
    if x.numel() and (x.min() < 0 or x.max() >= num_states):
        raise ValueError(f"{name}: pixels must lie in [0, {num_states}), got [{int(x.min())}, {int(x.max())}]")


def _to_uint8(x: torch.Tensor, shape: tuple[int, int, int], num_states: int) -> torch.Tensor:
    img = x.reshape(-1, *shape).double() * (255.0 / (num_states - 1))
    if shape[0] == 1:
        img = img.expand(-1, 3, -1, -1)
    return img.round().to(torch.uint8)
