"""The feature extractor of digits-FID: a small CNN classifier of sklearn's 8 × 8 digits, trained
here on the digits training split (nothing is downloaded), weights in weights/digits-features/.

FID needs features in which real images cluster as a human would judge them; Inception does that
for 299 × 299 photographs, not for 8 × 8 digits. The classifier's penultimate layer (64 features)
does it for digits. Its held-out accuracy is recorded in training.json beside the weights.

    python -m metrics.digits_features    # trains and writes weights/digits-features/ (seconds)
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save

from common.io import atomic_write_bytes, atomic_write_json

LEVELS = 17
FEATURES = 64
WEIGHTS = Path("weights/digits-features")


class DigitsClassifier(torch.nn.Module):
    """[B, 64] pixels in [0, 17) (or [B, 1, 8, 8]) -> features [B, 64]; `logits` gives the 10 classes."""

    num_features = FEATURES  # torchmetrics reads it instead of probing with a random image

    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(
            torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(32, 64, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(2),
            torch.nn.Flatten(), torch.nn.Linear(64 * 4 * 4, FEATURES), torch.nn.ReLU())
        self.head = torch.nn.Linear(FEATURES, 10)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(_as_input(images).to(self.head.weight.dtype))  # FID runs it in float64

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward(images))


def _as_input(images: torch.Tensor) -> torch.Tensor:
    """Pixels scaled to [0, 1] as [B, 1, 8, 8]; anything else is refused."""
    if images.dtype.is_floating_point or images.dtype == torch.bool:
        raise ValueError(f"digit images must be integer pixels in [0, {LEVELS}), got dtype {images.dtype}")
    if images.ndim == 2 and images.shape[1] == 64:
        images = images.reshape(-1, 1, 8, 8)
    if images.ndim != 4 or tuple(images.shape[1:]) != (1, 8, 8):
        raise ValueError(f"digit images must be [B, 64] or [B, 1, 8, 8], got shape {tuple(images.shape)}")
    if images.numel() and (images.min() < 0 or images.max() >= LEVELS):
        raise ValueError(f"digit pixels must lie in [0, {LEVELS}), got [{int(images.min())}, {int(images.max())}]")
    return images.float() / (LEVELS - 1)


def train_classifier(images: torch.Tensor, labels: torch.Tensor, epochs: int = 30, seed: int = 0) -> DigitsClassifier:
    """Adam on cross-entropy, minibatches of 64, with random shifts of one pixel (a digit stays a digit)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = DigitsClassifier()
    opt = torch.optim.Adam(net.parameters(), lr=2e-3)
    x = images.reshape(-1, 1, 8, 8)
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 64):
            idx = order[i:i + 64]
            dy, dx = torch.randint(-1, 2, (2,), generator=gen).tolist()
            batch = torch.roll(x[idx], shifts=(dy, dx), dims=(2, 3))
            loss = torch.nn.functional.cross_entropy(net.logits(batch), labels[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


@torch.no_grad()
def accuracy(net: DigitsClassifier, images: torch.Tensor, labels: torch.Tensor) -> float:
    return float((net.logits(images).argmax(-1) == labels).float().mean())


def load_classifier(directory: str | Path = WEIGHTS) -> DigitsClassifier:
    path = Path(directory) / "model.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"digits feature extractor {str(path)!r} does not exist; "
                                f"python -m metrics.digits_features trains it (seconds)")
    net = DigitsClassifier()
    net.load_state_dict(load_file(path), strict=True)
    return net.eval()


def main(out_dir: Path = WEIGHTS) -> dict:
    from data import digits

    spec = {"dir": "datasets/digits", "num_valid": 300, "seed": 0}  # configs/experiment/digits.yaml's data
    train_x, train_y = digits.load(spec, "train"), digits.labels(spec, "train")
    valid_x, valid_y = digits.load(spec, "valid"), digits.labels(spec, "valid")
    net = train_classifier(train_x, train_y)
    note = {"held_out_accuracy": accuracy(net, valid_x, valid_y), "train_accuracy": accuracy(net, train_x, train_y),
            "held_out_images": len(valid_x), "train_images": len(train_x), "features": FEATURES, "epochs": 30, "seed": 0}
    atomic_write_bytes(out_dir / "model.safetensors", save({k: v.contiguous() for k, v in net.state_dict().items()}))
    atomic_write_json(out_dir / "training.json", note)
    return note


if __name__ == "__main__":
    print(json.dumps(main(Path(sys.argv[1]) if len(sys.argv) > 1 else WEIGHTS)))
