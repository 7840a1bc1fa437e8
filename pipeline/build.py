"""Build the experiment's chain, forward process and model from a Hydra config."""
from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from data import countdown
from models.loaders import load_sedd
from models.chains import CHAIN_PRESETS, MarkovChain, load_chain
from models.oracle import OracleModel
from models.process import ForwardProcess, make_process


def build_chain(cfg: DictConfig) -> MarkovChain:
    """The Markov chain the experiment's data come from (a preset, or `oracle.chain_file`)."""
    name = cfg.experiment.chain
    if name == "file":
        if not cfg.oracle.chain_file:
            raise ValueError(f"experiment {cfg.experiment.name!r} reads its chain from a file: set oracle.chain_file=PATH.npz")
        return load_chain(cfg.oracle.chain_file)
    if name not in CHAIN_PRESETS:
        raise ValueError(f"unknown chain preset {name!r}; expected one of {sorted(CHAIN_PRESETS)} or 'file'")
    return CHAIN_PRESETS[name](cfg.experiment.vocab)


def build_process(cfg: DictConfig, chain: MarkovChain | None = None) -> ForwardProcess:
    chain = chain if chain is not None else build_chain(cfg)
    spec = OmegaConf.to_container(cfg.experiment.process, resolve=True)
    spec["kernel"]["num_states"] = chain.num_states
    return make_process(spec)


def build_model(cfg: DictConfig):
    """The model named by `model.name`, behind the model protocol (callable with `.process`)."""
    chain = build_chain(cfg)
    process = build_process(cfg, chain)
    if cfg.model.name == "oracle":
        return OracleModel(chain, process, floor=cfg.oracle.floor, output=cfg.oracle.output)
    if "format" not in cfg.model:
        raise ValueError(f"model {cfg.model.name!r} is neither 'oracle' nor a checkpoint (model.format, model.path)")
    model = load_sedd(cfg.model.format, cfg.model.path, precision=cfg.model.get("precision", "fp32"),
                      chunk=cfg.model.get("chunk"))
    model.net.to(resolve_device(cfg.get("device", "cpu")))
    want, got = (process.noise, type(process.kernel), process.num_states), \
        (model.process.noise, type(model.process.kernel), model.process.num_states)
    if want != got:
        raise ValueError(f"model {cfg.model.name!r} was trained with process {got}, but experiment "
                         f"{cfg.experiment.name!r} uses {want}")
    model.name = cfg.model.name
    return model


def dataset_paths(cfg: DictConfig) -> dict[str, Path]:
    """The experiment's train and valid files (experiment.data), built from its chain when missing."""
    d = cfg.experiment.get("data")
    if not d:
        raise ValueError(f"experiment {cfg.experiment.name!r} has no dataset files (experiment.data is null)")
    if cfg.experiment.chain != "countdown":
        raise ValueError(f"dataset files are built for CountDown only, not chain {cfg.experiment.chain!r}")
    return countdown.build(Path(d.dir), int(d.num_train), int(d.num_valid), int(cfg.experiment.length),
                           int(cfg.experiment.vocab), int(d.seed))


def sample_data(cfg: DictConfig, num: int, generator: torch.Generator) -> torch.Tensor:
    """x_0 for the experiment [num, L]: distinct random rows of its training file (the data a
    trained model learned from), or, for an experiment without files, fresh sequences from its chain."""
    if not cfg.experiment.get("data"):
        return build_chain(cfg).sample(num, cfg.experiment.length, generator)
    path = dataset_paths(cfg)["train"]
    total = int(cfg.experiment.data.num_train)
    if num > total:
        raise ValueError(f"asked for {num} data sequences, but {path} holds {total}")
    rows = torch.randperm(total, generator=generator)[:num]
    return countdown.load(path, int(cfg.experiment.vocab), int(cfg.experiment.length), rows)


def resolve_device(name: str) -> torch.device:
    """`device`: cpu, cuda (or cuda:<index>), or auto (cuda when torch sees a GPU, else cpu)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name != "cpu" and not str(name).startswith("cuda"):
        raise ValueError(f"unknown device {name!r}; expected cpu, cuda, cuda:<index> or auto")
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but torch sees no CUDA GPU; use device=cpu or device=auto")
    return torch.device(name)


def setup_torch(cfg: DictConfig) -> None:
    if cfg.get("threads"):
        torch.set_num_threads(int(cfg.threads))
