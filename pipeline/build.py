"""Build a config's model (the MODELS registry below) for its experiment (pipeline/experiment.py: the dataset, the
Markov chain when it has one, the forward process and the data's identity, resolved once).

An experiment names its dataset (`experiment.data.name`), its chain (`experiment.chain`, optional:
only the oracle and the chain metrics need one), its process, the models it runs (`experiment.models`)
and its metrics (`experiment.metrics`, see pipeline/metrics.py). A model config names its kind
(`model.kind`): a key of MODELS. New experiments add modules and configs, not branches here.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from common.dist import resolve_device
from models.loaders import load_sedd
from models.oracle import OracleModel
from models.tauldr_loaders import load_tauldr
from pipeline.experiment import Experiment, experiment_of


# ---------------------------------------------------------------------------------------------- models

ModelBuilder = Callable[[DictConfig, Experiment], object]  # (the model's config, its experiment) -> model


def _oracle(cfg: DictConfig, experiment: Experiment):
    chain = experiment.need_chain(f"model {cfg.model.name!r} (kind 'oracle')")
    return OracleModel(chain, experiment.process, floor=cfg.oracle.floor, output=cfg.oracle.output,
                       prefix=experiment.prefix)


def _require_checkpoint(cfg: DictConfig, kind: str, hint: str = "") -> None:
    missing = [k for k in ("format", "path") if not cfg.model.get(k)]
    if missing:
        raise ValueError(f"model {cfg.model.name!r} (kind {kind!r}) needs {['model.' + k for k in missing]}{hint}")


def _placed_and_checked(cfg: DictConfig, experiment: Experiment, model):
    """The loaded model on the configured device, refused when trained with another process."""
    model.net.to(resolve_device(cfg.get("device", "cpu")))
    process = experiment.process
    want, got = (process.noise, type(process.kernel), process.num_states), \
        (model.process.noise, type(model.process.kernel), model.process.num_states)
    if want != got:
        raise ValueError(f"model {cfg.model.name!r} was trained with process {got}, but experiment "
                         f"{experiment.name!r} uses {want}")
    return model


def _sedd(cfg: DictConfig, experiment: Experiment):
    _require_checkpoint(cfg, "sedd")
    return _placed_and_checked(cfg, experiment, load_sedd(cfg.model.format, cfg.model.path, chunk=cfg.model.get("chunk"),
                                                       precision=cfg.model.get("precision", "fp32")))


def _tauldr(cfg: DictConfig, experiment: Experiment):
    _require_checkpoint(cfg, "tauldr", ", e.g. model.path=DIR for a downloaded tauLDR run directory")
    process = experiment.process
    model = _placed_and_checked(cfg, experiment, load_tauldr(cfg.model.format, cfg.model.path, chunk=cfg.model.get("chunk")))
    # The Gaussian kernel's rate_sigma and Q_sigma show only in its rate matrix.
    if not torch.equal(process.kernel.rate_matrix(), model.process.kernel.rate_matrix()):
        raise ValueError(f"model {cfg.model.name!r} was trained with another {type(process.kernel).__name__} kernel "
                         f"(rate_sigma, Q_sigma) than experiment {experiment.name!r}'s experiment.process.kernel")
    return model


MODELS: dict[str, ModelBuilder] = {
    "oracle": _oracle,  # the exact denoiser of the experiment's chain (the `oracle` config section)
    "sedd": _sedd,      # a SEDD checkpoint: model.format (project | hf | run) and model.path
    "tauldr": _tauldr,  # a tauLDR image checkpoint: model.format (project | run) and model.path
}


def register_model(kind: str, builder: ModelBuilder) -> None:
    """Add a model kind: builder(cfg, experiment) -> a model behind the model protocol (cfg.model holds its settings;
    the experiment its process, chain and prefix)."""
    MODELS[kind] = builder


def build_model(cfg: DictConfig, experiment: Experiment | None = None):
    """The model of `model.kind`, behind the model protocol (callable, with `.process` and `identity()`)."""
    name = cfg.model.name
    allowed = cfg.experiment.get("models")
    if allowed is not None and name not in allowed:  # before the experiment is built: its chain may not exist yet
        raise ValueError(f"model {name!r} is not among experiment {cfg.experiment.name!r}'s models "
                         f"{list(allowed)} (experiment.models)")
    kind = cfg.model.get("kind")
    if kind not in MODELS:
        raise ValueError(f"unknown model kind {kind!r} (model.kind of model {name!r}); expected one of {sorted(MODELS)}")
    model = MODELS[kind](cfg, experiment or experiment_of(cfg))
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


# ---------------------------------------------------------------------------------------------- scripts

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def compose_config(overrides: list[str]) -> DictConfig:
    """The project's config under these overrides, outside a Hydra app (scripts, notebooks, tests)."""
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose("config", overrides=list(overrides))


def oracle_setup(experiment: str, sampler: str, overrides: list[str]) -> tuple[list[str], DictConfig, object]:
    """The oracle studies' start (scripts/jys_grid_table.py, best_grid_scan.py): the overrides that name the
    experiment's exact oracle and the sampler before the caller's own, the config they compose (torch set up
    by it) and the oracle model. Returns (overrides, cfg, model); the caller composes base + [f"nfe={n}"] etc."""
    base = [f"experiment={experiment}", "model=oracle", f"sampler={sampler}", "progress=false", *overrides]
    cfg = compose_config(base)
    setup_torch(cfg)
    return base, cfg, build_model(cfg)


def oracle_metric(cfg: DictConfig, model) -> str:
    """The whole-sequence metric an oracle study reads: CountDown's error under a masking kernel (whose
    chain NLL is dominated by the last tokens' ordering), else the exact chain's NLL."""
    countdown = cfg.experiment.get("chain") == "countdown" and model.process.kernel.mask is not None
    return "countdown_error" if countdown else "chain_nll"
