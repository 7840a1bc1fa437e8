"""The text extra: the first few samples of each cell decoded, under runs/<experiment>/samples/."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from common.io import atomic_write_bytes
from metrics.text import TextTokenizer
from results.figures import samples_file


def write_text_samples(runs: str | Path, records: list[dict], tokenizer_path: str | Path, vocab: int,
                       per_cell: int = 4) -> Path:
    tokenizer = TextTokenizer(tokenizer_path)
    tokenizer.check_vocab(vocab)
    out = Path(runs) / records[0]["experiment"] / "samples"
    for r in records:
        if r.get("role") in ("floor",) or "samples_file" not in r:
            continue
        with np.load(samples_file(runs, r)) as f:
            samples = torch.from_numpy(f["samples"][:per_cell].astype(np.int64))
        body = "".join(f"===== sample {i} =====\n{t}\n" for i, t in enumerate(tokenizer.decode(samples)))
        atomic_write_bytes(out / f"{r['sampler']}-{r['schedule']}-nfe{r['nfe_calls']}.txt", body.encode())
    return out
