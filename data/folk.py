"""Folk melodies of the Essen collection (ABC files that music21 ships) as piano-roll sequences under
datasets/folk/: the embedded stand-in for tauLDR's Lakh piano rolls (the music experiment).

A tune becomes one token per 16th note (`steps_per_quarter` = 4, tauLDR's 16 steps per 4/4 bar): the
MIDI number 0-127 of the note sounding, or 128 for rest (tauLDR's layout, S = 129). Tunes are kept in
their written key (no transposition), so pitch histograms compare like with like. A tune is skipped
and counted, never a crash, when it has a chord (not monophonic), a note or rest off the 16th grid
(triplets, for instance), a pitch outside 0-127, no notes, or fewer steps than a sequence.

Splits hold out whole tunes: `num_valid` tunes drawn with `seed` among those long enough. A held-out
tune gives one sequence (its first `length` steps: the music experiment conditions on its opening
bars); a training tune gives every window of `length` steps starting on a multiple of `stride` steps.

Parsing all 8,514 tunes takes minutes, so each ABC file's tunes are cached under cache/ as soon as
it is parsed (with a progress bar), and a rerun resumes from there. The cache is keyed by the file and
steps_per_quarter only: after changing `quantize`, delete cache/.

"Two bars" and "every bar" below count 16 steps (a 4/4 bar); a tune with a pickup or in another meter
is cut at the same 16-step marks. Files: {train,valid}.npy (uint8
[N, length]), valid_tunes.json (the held-out tunes' names), made_by.json (settings and counts of
skips), written atomically, never over files of another shape or other settings.

Registry interface (data/__init__.py): spec = experiment.data with keys dir, length, stride,
num_valid, seed, steps_per_quarter, files (null: every Essen file).
"""
from __future__ import annotations

import io
import json
import os
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

from common.io import atomic_write_bytes
from data import take_rows

SPLITS = ("train", "valid")
REST = 128
STATES = 129  # MIDI 0-127 and rest
SKIPS = ("chord", "off_grid", "pitch_range", "empty", "unparsable", "too_short")


class SkipTune(ValueError):
    """A tune that cannot become a monophonic 16th-note grid; `reason` is one of SKIPS."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def vocab(spec: dict) -> int:
    return STATES


def length(spec: dict) -> int:
    return int(spec["length"])


def quantize(score, steps_per_quarter: int = 4) -> np.ndarray:
    """A music21 stream of one monophonic tune -> its grid [T] uint8: MIDI number per step, 128 for rest.
    Ties are merged and grace notes dropped; raises SkipTune when the tune does not fit the grid."""
    from music21 import chord, note

    events = []
    for el in score.stripTies().flatten().notesAndRests:
        if el.duration.isGrace or el.quarterLength == 0:
            continue
        if isinstance(el, chord.Chord):
            raise SkipTune("chord", f"a chord at offset {el.offset}")
        start, dur = Fraction(el.offset) * steps_per_quarter, Fraction(el.quarterLength) * steps_per_quarter
        if start.denominator != 1 or dur.denominator != 1:
            raise SkipTune("off_grid", f"{el.name if isinstance(el, note.Note) else 'rest'} at quarter "
                                       f"{float(el.offset):g} lasting {float(el.quarterLength):g} quarters")
        if isinstance(el, note.Note):
            midi = el.pitch.ps  # not .midi, which music21 folds into 0-127
            if midi != int(midi) or not 0 <= midi < REST:
                raise SkipTune("pitch_range", f"pitch {el.nameWithOctave} (MIDI {midi:g}) is not a whole MIDI "
                                              f"number in [0, 127]")
            events.append((int(start), int(dur), int(midi)))
    if not events:
        raise SkipTune("empty", "no notes")
    grid = np.full(max(s + d for s, d, _ in events), REST, dtype=np.uint8)
    for s, d, midi in events:
        if (grid[s:s + d] != REST).any():
            raise SkipTune("chord", f"notes overlap at step {s}")
        grid[s:s + d] = midi
    return grid


def build(spec: dict) -> dict[str, Path]:
    """{split: .npy}; parses what is not cached yet, then writes the splits when missing."""
    out_dir = Path(spec["dir"])
    paths = {split: out_dir / f"{split}.npy" for split in SPLITS}
    made_by_path = out_dir / "made_by.json"
    if all(p.is_file() for p in paths.values()) and made_by_path.is_file():
        found = json.loads(made_by_path.read_text())["settings"]
        if found != _settings(spec):
            raise ValueError(f"{out_dir} was built with {found}, but {_settings(spec)} was asked for; "
                             f"move it away or choose another experiment.data.dir")
        for p in paths.values():
            _check_shape(p, (None, length(spec)))
        return paths
    tunes, skips = parse_corpus(spec)
    L, stride = length(spec), int(spec["stride"])
    if L < 1 or stride < 1:
        raise ValueError(f"experiment.data.length and stride must be positive, got {L} and {stride}")
    names = sorted(n for n, g in tunes.items() if len(g) >= L)
    skips["too_short"] = len(tunes) - len(names)
    num_valid = int(spec["num_valid"])
    if not 0 < num_valid < len(names):
        raise ValueError(f"experiment.data.num_valid must lie in (0, {len(names)}) (tunes of at least {L} steps), "
                         f"got {num_valid}")
    order = np.random.default_rng(int(spec["seed"])).permutation(len(names))
    valid = sorted(names[i] for i in order[:num_valid])
    held = set(valid)
    train = [tunes[n][s:s + L] for n in names if n not in held for s in range(0, len(tunes[n]) - L + 1, stride)]
    _write_npy(paths["train"], np.stack(train))
    _write_npy(paths["valid"], np.stack([tunes[n][:L] for n in valid]))
    atomic_write_bytes(out_dir / "valid_tunes.json", json.dumps(valid, indent=0).encode())
    made_by = {"settings": _settings(spec), "tunes_parsed": len(tunes) + sum(v for k, v in skips.items()
                                                                             if k != "too_short"),
               "tunes_kept": len(names), "skipped": skips, "sequences": {"train": len(train), "valid": len(valid)}}
    atomic_write_bytes(made_by_path, json.dumps(made_by, indent=1).encode())
    return paths


def parse_corpus(spec: dict) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Every tune of the chosen Essen files as {name: grid}, and the counts of skipped tunes by reason.
    Files not cached yet are parsed in worker processes (one per CPU core), each cached in
    <dir>/cache/<file>-q<steps>.npz as soon as it is done."""
    from concurrent.futures import ProcessPoolExecutor

    from common.progress import progress as progress_bar

    steps = int(spec["steps_per_quarter"])
    files = essen_files(spec.get("files"))
    cached = {p: Path(spec["dir"]) / "cache" / f"{p.stem}-q{steps}.npz" for p in files}
    todo = [p for p in files if not cached[p].is_file()]
    if todo:
        with ProcessPoolExecutor(max_workers=min(len(todo), os.cpu_count() or 1)) as pool:
            jobs = pool.map(_parse_and_cache, todo, [cached[p] for p in todo], [steps] * len(todo))
            for _ in progress_bar(jobs, total=len(todo),
                                  desc=f"parsing Essen tunes ({len(files) - len(todo)} files cached)"):
                pass
    tunes, skips = {}, dict.fromkeys(SKIPS, 0)
    for path in files:
        with np.load(cached[path]) as f:
            ends = np.cumsum(f["lengths"])
            for name, start, end in zip(f["names"], ends - f["lengths"], ends):
                tunes[f"{path.stem}/{name}"] = f["grids"][start:end]
            for reason, count in zip(f["skip_reasons"], f["skip_counts"]):
                skips[str(reason)] += int(count)
    return tunes, skips


def _parse_and_cache(path: Path, out: Path, steps_per_quarter: int) -> None:
    _write_cache(out, *_parse_file(path, steps_per_quarter))


def essen_files(names: list[str] | None = None) -> list[Path]:
    """The Essen ABC files music21 ships (all 31, or the named ones)."""
    from music21 import corpus

    found = {Path(str(p)).name: Path(str(p)) for p in corpus.getComposer("essenFolksong")}
    if not found:
        raise FileNotFoundError("music21 lists no Essen folk-song files (corpus.getComposer('essenFolksong')); "
                                "is music21==10.5.1 installed?")
    if names is None:
        return [found[n] for n in sorted(found)]
    unknown = [n for n in names if n not in found]
    if unknown:
        raise ValueError(f"experiment.data.files names {unknown}, not Essen files; expected some of {sorted(found)}")
    return [found[n] for n in names]


def _parse_file(path: Path, steps_per_quarter: int):
    from music21 import abcFormat
    from music21.abcFormat import translate

    handler = abcFormat.ABCHandler()
    handler.process(path.read_text(encoding="latin-1"))
    names, grids, skips = [], [], dict.fromkeys(SKIPS, 0)
    for number, book in handler.splitByReferenceNumber().items():
        try:
            grid = quantize(translate.abcToStreamScore(book), steps_per_quarter)
        except SkipTune as skip:
            skips[skip.reason] += 1
            continue
        except Exception:  # noqa: BLE001 - music21 raises many types on malformed ABC: count, go on
            skips["unparsable"] += 1
            continue
        names.append(str(number))
        grids.append(grid)
    return names, grids, skips


def _write_cache(path: Path, names: list[str], grids: list[np.ndarray], skips: dict[str, int]) -> None:
    buf = io.BytesIO()
    np.savez(buf, names=np.array(names, dtype=str), lengths=np.array([len(g) for g in grids], dtype=np.int64),
             grids=np.concatenate(grids) if grids else np.zeros(0, np.uint8),
             skip_reasons=np.array(list(skips), dtype=str), skip_counts=np.array(list(skips.values())))
    atomic_write_bytes(path, buf.getvalue())


def size(spec: dict, split: str = "train") -> int:
    return int(np.load(_split_path(spec, split), mmap_mode="r").shape[0])


def load(spec: dict, split: str = "train", rows: torch.Tensor | None = None) -> torch.Tensor:
    """The split's sequences [N, length] int64 in [0, 129), or only the given rows (in their order)."""
    return take_rows(np.load(_split_path(spec, split), mmap_mode="r"), rows, f"sequences of the folk {split} split")


def valid_tunes(spec: dict) -> list[str]:
    """The held-out tunes' names (file/number), in the valid split's row order."""
    _split_path(spec, "valid")
    return json.loads((Path(spec["dir"]) / "valid_tunes.json").read_text())


def _settings(spec: dict) -> dict:
    return {k: spec.get(k) for k in ("length", "stride", "num_valid", "seed", "steps_per_quarter", "files")}


def _split_path(spec: dict, split: str) -> Path:
    if split not in SPLITS:
        raise ValueError(f"unknown folk split {split!r}; expected one of {SPLITS}")
    return build(spec)[split]


def _check_shape(path: Path, shape: tuple) -> None:
    found = np.load(path, mmap_mode="r").shape
    if len(found) != len(shape) or any(s is not None and s != f for s, f in zip(shape, found)):
        raise ValueError(f"{path} holds an array of shape {found}, but [N, {shape[1]}] was asked for; "
                         f"move it away or choose another experiment.data.dir")


def _write_npy(path: Path, array: np.ndarray) -> None:
    if path.is_file():
        _check_shape(path, (None, array.shape[1]))
    buf = io.BytesIO()
    np.save(buf, array.astype(np.uint8))
    atomic_write_bytes(path, buf.getvalue())
