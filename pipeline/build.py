"""Build an experiment's pieces from a Hydra config: its dataset (the data/ registry), its Markov chain
(when it has one), its forward process, its model (the MODELS registry below), and the identity of its
data, which keys cached artifacts beside the model's own identity.

An experiment names its dataset (`experiment.data.name`), its chain (`experiment.chain`, optional:
only the oracle and the chain metrics need one), its process, the models it runs (`experiment.models`)
and its metrics (`experiment.metrics`, see pipeline/metrics.py). A model config names its kind
(`model.kind`): a key of MODELS. New experiments add modules and configs, not branches here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from omegaconf import DictConfig, OmegaConf

from common.dist import resolve_device
from common.io import file_sha256
from data import DATASETS, get_dataset
from models.chains import CHAIN_PRESETS, MarkovChain, load_chain
from models.loaders import load_sedd
from models.oracle import OracleModel
from models.process import ForwardProcess, make_process
from models.tauldr_loaders import load_tauldr


def has_chain(cfg: DictConfig) -> bool:
    return bool(cfg.experiment.get("chain"))


def build_chain(cfg: DictConfig, need: str = "this stage") -> MarkovChain:
    """The Markov chain the experiment's data come from (a preset, or a file: `oracle.chain_file` when set,
    else `experiment.chain_file`, as an oracle twin of a real-data experiment names its fitted chain)."""
    name = cfg.experiment.get("chain")
    if not name:
        raise ValueError(f"experiment {cfg.experiment.name!r} has no Markov chain (experiment.chain is unset), "
                         f"but {need} needs one")
    if name == "file":
        path = cfg.oracle.chain_file or cfg.experiment.get("chain_file")  # the command line's, else the experiment's
        if not path:
            raise ValueError(f"experiment {cfg.experiment.name!r} reads its chain from a file: set oracle.chain_file=PATH.npz "
                             "(or experiment.chain_file)")
        if not cfg.oracle.chain_file and not Path(path).is_file():
            raise FileNotFoundError(f"experiment {cfg.experiment.name!r} reads its chain from {str(path)!r} "
                                    "(experiment.chain_file), which does not exist; fit it to a real experiment's "
                                    f"training split: python -m pipeline.fit_chain <experiment> {path}")
        return load_chain(path)
    if name not in CHAIN_PRESETS:
        raise ValueError(f"unknown chain preset {name!r}; expected one of {sorted(CHAIN_PRESETS)} or 'file'")
    return CHAIN_PRESETS[name](cfg.experiment.vocab)


# ---------------------------------------------------------------------------------------------- data

def data_spec(cfg: DictConfig) -> dict | None:
    """experiment.data as a plain dict (interpolations resolved), or None for an experiment without files."""
    d = cfg.experiment.get("data")
    if not d:
        return None
    spec = OmegaConf.to_container(d, resolve=True)
    if not spec.get("name"):
        raise ValueError(f"experiment {cfg.experiment.name!r}: experiment.data lacks a name; expected one of "
                         f"{sorted(DATASETS)}")
    return spec


def _dataset(cfg: DictConfig, spec: dict):
    module = get_dataset(spec["name"])
    length = module.length(spec)
    if length != int(cfg.experiment.length):
        raise ValueError(f"dataset {spec['name']!r} holds sequences of length {length}, but experiment "
                         f"{cfg.experiment.name!r} has length {cfg.experiment.length} (experiment.length)")
    return module


def dataset_vocab(cfg: DictConfig) -> int | None:
    """Tokens of the experiment's dataset files (experiment.data), never reading its chain; None without files."""
    spec = data_spec(cfg)
    return _dataset(cfg, spec).vocab(spec) if spec else None


def data_vocab(cfg: DictConfig, chain: MarkovChain | None = None) -> int:
    """States of x_0: the chain's when the experiment has one (its dataset must agree), else its dataset's."""
    spec = data_spec(cfg)
    from_data = dataset_vocab(cfg)
    if has_chain(cfg):
        states = (chain if chain is not None else build_chain(cfg)).num_states
        if from_data is not None and from_data != states:
            raise ValueError(f"experiment {cfg.experiment.name!r}: dataset {spec['name']!r} has {from_data} tokens "
                             f"but its chain has {states} states")
        return states
    if from_data is None:
        raise ValueError(f"experiment {cfg.experiment.name!r} has neither a dataset (experiment.data) nor a "
                         "Markov chain (experiment.chain): its vocabulary is unknown")
    return from_data


def dataset_paths(cfg: DictConfig) -> dict[str, Path]:
    """The experiment's dataset files by split (experiment.data), built by its data module when missing."""
    spec = data_spec(cfg)
    if spec is None:
        raise ValueError(f"experiment {cfg.experiment.name!r} has no dataset files (experiment.data is null)")
    return _dataset(cfg, spec).build(spec)


def load_data(cfg: DictConfig, split: str = "train", rows: torch.Tensor | None = None) -> torch.Tensor:
    """A split of the experiment's dataset [N, L] int64 (only the given rows, if any)."""
    spec = data_spec(cfg)
    if spec is None:
        raise ValueError(f"experiment {cfg.experiment.name!r} has no dataset files (experiment.data is null)")
    module = _dataset(cfg, spec)
    module.build(spec)
    return module.load(spec, split, rows)


def condition_rows(cfg: DictConfig, num: int) -> torch.Tensor:
    """The data sequences conditional sampling continues [num, L]: sample i takes row i mod N of
    experiment.condition.split (default valid: held-out data)."""
    rows = load_data(cfg, str(cfg.experiment.condition.get("split") or "valid"))
    return rows[torch.arange(num) % rows.shape[0]]


def condition_prefixes(cfg: DictConfig, num: int) -> torch.Tensor | None:
    """The first K tokens of condition_rows [num, K]; None when K = 0. An experiment without dataset
    files draws them from its chain (seed experiment.condition.seed)."""
    K = condition_prefix(cfg)
    if not K:
        return None
    if data_spec(cfg) is None:
        g = torch.Generator().manual_seed(int(cfg.experiment.condition.get("seed") or 0))
        return build_chain(cfg, need="condition prefixes").sample(num, K, g)
    return condition_rows(cfg, num)[:, :K]


def sample_data(cfg: DictConfig, num: int, generator: torch.Generator) -> torch.Tensor:
    """x_0 for the experiment [num, L]: distinct random rows of its training file (the data a
    trained model learned from), or, for an experiment without files, fresh sequences from its chain."""
    spec = data_spec(cfg)
    if spec is None:
        return build_chain(cfg, need="x_0 without dataset files (experiment.data is null)").sample(
            num, int(cfg.experiment.length), generator)
    module = _dataset(cfg, spec)
    module.build(spec)
    total = int(module.size(spec, "train"))
    if num > total:
        raise ValueError(f"asked for {num} data sequences, but the training split of dataset {spec['name']!r} "
                         f"holds {total}")
    rows = torch.randperm(total, generator=generator)[:num]
    return module.load(spec, "train", rows)


def data_identity(cfg: DictConfig) -> dict | None:
    """What fixes the experiment's data: the hash of each dataset file (built when missing), or for an
    experiment without files the hash of the chain its x_0 come from; None when it has neither."""
    spec = data_spec(cfg)
    if spec is not None:
        files = dataset_paths(cfg)
        return {"dataset": spec["name"], "sha256": {split: file_sha256(p) for split, p in sorted(files.items())}}
    if has_chain(cfg):
        return {"chain_sha256": build_chain(cfg).sha256()}
    return None


def condition_prefix(cfg: DictConfig) -> int:
    """experiment.condition.prefix: the number of leading tokens that are data, never generated (0: none)."""
    condition = cfg.experiment.get("condition") or {}
    K, L = int(condition.get("prefix") or 0), int(cfg.experiment.length)
    if not 0 <= K < L:
        raise ValueError(f"experiment.condition.prefix={K}: the prefix must lie in [0, {L}) (experiment.length "
                         f"is {L}; at least one token must be generated)")
    return K


# --------------------------------------------------------------------------------------------- process

def build_process(cfg: DictConfig, chain: MarkovChain | None = None) -> ForwardProcess:
    spec = OmegaConf.to_container(cfg.experiment.process, resolve=True)
    spec["kernel"]["num_states"] = data_vocab(cfg, chain)
    return make_process(spec)


# ---------------------------------------------------------------------------------------------- models

ModelBuilder = Callable[[DictConfig, ForwardProcess, "MarkovChain | None"], object]


def _oracle(cfg: DictConfig, process: ForwardProcess, chain: MarkovChain | None):
    chain = chain if chain is not None else build_chain(cfg, need=f"model {cfg.model.name!r} (kind 'oracle')")
    return OracleModel(chain, process, floor=cfg.oracle.floor, output=cfg.oracle.output, prefix=condition_prefix(cfg))


def _require_checkpoint(cfg: DictConfig, kind: str, hint: str = "") -> None:
    missing = [k for k in ("format", "path") if not cfg.model.get(k)]
    if missing:
        raise ValueError(f"model {cfg.model.name!r} (kind {kind!r}) needs {['model.' + k for k in missing]}{hint}")


def _placed_and_checked(cfg: DictConfig, process: ForwardProcess, model):
    """The loaded model on the configured device, refused when trained with another process."""
    model.net.to(resolve_device(cfg.get("device", "cpu")))
    want, got = (process.noise, type(process.kernel), process.num_states), \
        (model.process.noise, type(model.process.kernel), model.process.num_states)
    if want != got:
        raise ValueError(f"model {cfg.model.name!r} was trained with process {got}, but experiment "
                         f"{cfg.experiment.name!r} uses {want}")
    return model


def _sedd(cfg: DictConfig, process: ForwardProcess, chain: MarkovChain | None):
    _require_checkpoint(cfg, "sedd")
    return _placed_and_checked(cfg, process, load_sedd(cfg.model.format, cfg.model.path, chunk=cfg.model.get("chunk"),
                                                       precision=cfg.model.get("precision", "fp32")))


def _tauldr(cfg: DictConfig, process: ForwardProcess, chain: MarkovChain | None):
    _require_checkpoint(cfg, "tauldr", ", e.g. model.path=DIR for a downloaded tauLDR run directory")
    model = _placed_and_checked(cfg, process, load_tauldr(cfg.model.format, cfg.model.path, chunk=cfg.model.get("chunk")))
    # The Gaussian kernel's rate_sigma and Q_sigma show only in its rate matrix.
    if not torch.equal(process.kernel.rate_matrix(), model.process.kernel.rate_matrix()):
        raise ValueError(f"model {cfg.model.name!r} was trained with another {type(process.kernel).__name__} kernel "
                         f"(rate_sigma, Q_sigma) than experiment {cfg.experiment.name!r}'s experiment.process.kernel")
    return model


MODELS: dict[str, ModelBuilder] = {
    "oracle": _oracle,  # the exact denoiser of the experiment's chain (the `oracle` config section)
    "sedd": _sedd,      # a SEDD checkpoint: model.format (project | hf | run) and model.path
    "tauldr": _tauldr,  # a tauLDR image checkpoint: model.format (project | run) and model.path
}


def register_model(kind: str, builder: ModelBuilder) -> None:
    """Add a model kind: builder(cfg, process, chain or None) -> a model behind the model protocol."""
    MODELS[kind] = builder


def build_model(cfg: DictConfig):
    """The model of `model.kind`, behind the model protocol (callable, with `.process` and `identity()`)."""
    name = cfg.model.name
    allowed = cfg.experiment.get("models")
    if allowed is not None and name not in allowed:
        raise ValueError(f"model {name!r} is not among experiment {cfg.experiment.name!r}'s models "
                         f"{list(allowed)} (experiment.models)")
    kind = cfg.model.get("kind")
    if kind not in MODELS:
        raise ValueError(f"unknown model kind {kind!r} (model.kind of model {name!r}); expected one of {sorted(MODELS)}")
    chain = build_chain(cfg) if has_chain(cfg) else None
    model = MODELS[kind](cfg, build_process(cfg, chain), chain)
    model.name = name
    return model


def model_identity(model) -> dict:
    """The model's identity(): what fixes its outputs (weights or chain hash, precision, ...)."""
    if not callable(getattr(model, "identity", None)):
        raise ValueError(f"model {getattr(model, 'name', model)!r} has no identity(); cached artifacts are keyed on it")
    return model.identity()


# ---------------------------------------------------------------------------------------------- torch

def setup_torch(cfg: DictConfig) -> None:
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
