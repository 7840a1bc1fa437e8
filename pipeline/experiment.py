"""An experiment resolved once from the Hydra config: its name, length, condition prefix, Markov chain (when it
has one), forward process and dataset, with the methods the stages need (x_0 for the search, dataset splits,
condition prefixes, the data's identity). Everything below the composition root takes this object, or plain
values from it, instead of the config.

`experiment_of(cfg)` builds it once per experiment config in a process (a multirun's jobs and a stage's repeated
calls share it); `Experiment.from_config` always builds afresh.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from common.io import file_sha256
from data import DATASETS, get_dataset
from models.chains import CHAIN_PRESETS, MarkovChain, load_chain
from models.process import ForwardProcess, make_process


def _chain(experiment: dict, chain_file: str | None) -> MarkovChain | None:
    """The Markov chain the experiment's data come from (a preset, or a file: `oracle.chain_file` when set, else
    `experiment.chain_file`, as an oracle twin of a real-data experiment names its fitted chain); None without."""
    name, label = experiment.get("chain"), experiment["name"]
    if not name:
        return None
    if name == "file":
        path = chain_file or experiment.get("chain_file")  # the command line's, else the experiment's
        if not path:
            raise ValueError(f"experiment {label!r} reads its chain from a file: set oracle.chain_file=PATH.npz "
                             "(or experiment.chain_file)")
        if not chain_file and not Path(path).is_file():
            raise FileNotFoundError(f"experiment {label!r} reads its chain from {str(path)!r} (experiment.chain_file), "
                                    "which does not exist; fit it to a real experiment's training split: "
                                    f"python -m pipeline.fit_chain <experiment> {path}")
        return load_chain(path)
    if name not in CHAIN_PRESETS:
        raise ValueError(f"unknown chain preset {name!r}; expected one of {sorted(CHAIN_PRESETS)} or 'file'")
    return CHAIN_PRESETS[name](experiment["vocab"])


@dataclass
class Experiment:
    name: str
    length: int
    prefix: int  # leading tokens that are data, never generated (experiment.condition.prefix; 0: none)
    chain: MarkovChain | None
    process: ForwardProcess
    data: dict | None  # experiment.data, resolved (None: x_0 come from the chain)
    condition_split: str = "valid"
    condition_seed: int = 0
    config: dict = field(default_factory=dict)  # the resolved experiment config less metrics and models: keys caches

    @classmethod
    def from_config(cls, cfg: DictConfig) -> Experiment:
        e = OmegaConf.to_container(cfg.experiment, resolve=True)
        name, length = e["name"], int(e["length"])
        condition = e.get("condition") or {}
        prefix = int(condition.get("prefix") or 0)
        if not 0 <= prefix < length:
            raise ValueError(f"experiment.condition.prefix={prefix}: the prefix must lie in [0, {length}) "
                             f"(experiment.length is {length}; at least one token must be generated)")
        data = e.get("data") or None
        if data is not None and not data.get("name"):
            raise ValueError(f"experiment {name!r}: experiment.data lacks a name; expected one of {sorted(DATASETS)}")
        if data is not None:
            found = get_dataset(data["name"]).length(data)
            if found != length:
                raise ValueError(f"dataset {data['name']!r} holds sequences of length {found}, but experiment "
                                 f"{name!r} has length {length} (experiment.length)")
        oracle = cfg.get("oracle") or {}
        chain = _chain(e, oracle.get("chain_file"))
        from_data = get_dataset(data["name"]).vocab(data) if data is not None else None
        if chain is not None and from_data is not None and from_data != chain.num_states:
            raise ValueError(f"experiment {name!r}: dataset {data['name']!r} has {from_data} tokens but its chain has "
                             f"{chain.num_states} states")
        if chain is None and from_data is None:
            raise ValueError(f"experiment {name!r} has neither a dataset (experiment.data) nor a Markov chain "
                             "(experiment.chain): its vocabulary is unknown")
        spec = dict(e["process"])
        spec["kernel"] = {**spec["kernel"], "num_states": chain.num_states if chain is not None else from_data}
        return cls(name=name, length=length, prefix=prefix, chain=chain, process=make_process(spec), data=data,
                   condition_split=str(condition.get("split") or "valid"), condition_seed=int(condition.get("seed") or 0),
                   config={k: v for k, v in e.items() if k not in ("metrics", "models")})

    @property
    def vocab(self) -> int:
        """States of x_0 (the chain's, which the dataset must agree with, else the dataset's)."""
        return self.process.data_states

    def need_chain(self, need: str) -> MarkovChain:
        if self.chain is None:
            raise ValueError(f"experiment {self.name!r} has no Markov chain (experiment.chain is unset), but {need} "
                             "needs one")
        return self.chain

    def _module(self, what: str):
        if self.data is None:
            raise ValueError(f"experiment {self.name!r} has no dataset files (experiment.data is null), but {what} "
                             "needs them")
        module = get_dataset(self.data["name"])
        module.build(self.data)
        return module

    def paths(self) -> dict[str, Path]:
        """The dataset files by split, built by the data module when missing."""
        if self.data is None:
            raise ValueError(f"experiment {self.name!r} has no dataset files (experiment.data is null)")
        return get_dataset(self.data["name"]).build(self.data)

    def load(self, split: str = "train", rows: torch.Tensor | None = None) -> torch.Tensor:
        """A split of the dataset [N, L] int64 (only the given rows, if any)."""
        return self._module(f"the {split} split").load(self.data, split, rows)

    def heldout_windows(self, num: int, seed: int) -> torch.Tensor:
        """Disjoint windows of the valid split [n, L] int64, at random multiples of L (seeded): n = num, or every
        disjoint window where the split holds fewer (the caller decides whether that will do)."""
        windows = self.load("valid")  # [T - L + 1, L]: every window
        L = windows.shape[1]
        slots = (windows.shape[0] - 1) // L + 1
        starts = torch.randperm(slots, generator=torch.Generator().manual_seed(int(seed)))[:num] * L
        return windows[starts].long()

    def draw_x0(self, num: int, generator: torch.Generator) -> torch.Tensor:
        """x_0 [num, L] as drawn: distinct random rows of the training file (the data a trained model learned from),
        or, without files, fresh sequences from the chain."""
        if self.data is None:
            return self.need_chain("x_0 without dataset files (experiment.data is null)").sample(num, self.length,
                                                                                                 generator)
        module = self._module("x_0")
        total = int(module.size(self.data, "train"))
        if num > total:
            raise ValueError(f"asked for {num} data sequences, but the training split of dataset {self.data['name']!r} "
                             f"holds {total}")
        return module.load(self.data, "train", torch.randperm(total, generator=generator)[:num])

    def sample_x0(self, num: int, generator: torch.Generator) -> torch.Tensor:
        """draw_x0, checked against the experiment's length and the process's data states (the search's x_0)."""
        x0 = self.draw_x0(num, generator)
        if x0.shape != (num, self.length):
            raise ValueError(f"data of shape {tuple(x0.shape)}, expected ({num}, {self.length}) (experiment.length)")
        if x0.numel() and (x0.min() < 0 or x0.max() >= self.vocab):
            raise ValueError(f"data tokens in [{int(x0.min())}, {int(x0.max())}], but the process has {self.vocab} "
                             "data states")
        return x0

    def condition_rows(self, num: int) -> torch.Tensor:
        """The data sequences conditional sampling continues [num, L]: sample i takes row i mod N of the
        condition split (experiment.condition.split, default valid: held-out data)."""
        rows = self.load(self.condition_split)
        return rows[torch.arange(num) % rows.shape[0]]

    def prefixes(self, num: int) -> torch.Tensor | None:
        """The first K tokens of condition_rows [num, K]; None when K = 0. Without dataset files they are drawn
        from the chain (seed experiment.condition.seed)."""
        if not self.prefix:
            return None
        if self.data is None:
            g = torch.Generator().manual_seed(self.condition_seed)
            return self.need_chain("condition prefixes").sample(num, self.prefix, g)
        return self.condition_rows(num)[:, :self.prefix]

    def identity(self) -> dict | None:
        """What fixes the data: the hash of each dataset file (built when missing), or without files the hash of
        the chain x_0 come from; None when there is neither."""
        if self.data is not None:
            return {"dataset": self.data["name"],
                    "sha256": {split: file_sha256(p) for split, p in sorted(self.paths().items())}}
        if self.chain is not None:
            return {"chain_sha256": self.chain.sha256()}
        return None


_BUILT: dict[str, Experiment] = {}


def experiment_of(cfg: DictConfig) -> Experiment:
    """The experiment of a config, built once per (experiment config, oracle.chain_file) in this process. A chain
    file rewritten with the same size and modification time within one process (a copy that keeps the time) is not
    seen; each stage is its own process."""
    oracle = cfg.get("oracle") or {}
    experiment = OmegaConf.to_container(cfg.experiment, resolve=True)
    chain_file = oracle.get("chain_file") or experiment.get("chain_file")
    stat = Path(chain_file).stat() if chain_file and Path(chain_file).is_file() else None
    key = json.dumps([experiment, oracle.get("chain_file"), stat and (stat.st_size, stat.st_mtime_ns)],
                     sort_keys=True, default=str)  # a rewritten chain file is another experiment
    if key not in _BUILT:
        if len(_BUILT) >= 4:  # a chain can be large (S² floats): keep the few a process uses
            _BUILT.pop(next(iter(_BUILT)))
        _BUILT[key] = Experiment.from_config(cfg)
    return _BUILT[key]
