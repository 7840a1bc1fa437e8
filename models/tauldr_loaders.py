"""Loaders for tauLDR checkpoints (the image UNet and the piano sequence transformer): the project's
own and the published run format.

- project: weights/<name>/ with model.safetensors + config.yaml (`format: jys-tauldr`), written by
  export_tauldr
- run: a published tauLDR run directory (andrew-cr/tauLDR lib/utils/bookkeeping.py): its training
  config (config.yaml, or the latest config/config_NNN.yaml) and ckpt.pt or the latest
  checkpoints/ckpt_NNNNNNNNNN.pt = {model, optimizer, n_iter}; `model` holds the raw weights under
  `net.` (`net.module.` from multi-GPU runs) plus ema_decay, ema_num_updates and ema_shadow_params
  (a list in parameters() order). The EMA weights are used, as tauLDR's model.eval() does.
Every loader builds the network strictly (no missing or unexpected key, every shape checked) and
returns a TauLDRModel with its forward process. Errors name the file and the key.

The UNet's weights do not depend on S (its output is a logistic's mean and scale per pixel), so S is
checked where it appears: against data_min_max (UNetConfig) and against the forward process. The
transformer's input and output layers have S rows: a checkpoint of another S fails on their shapes.
Published sequence checkpoints load with long_times on: tauLDR's wrapper calls the net with t.long().
"""
from __future__ import annotations

import pickle
from pathlib import Path

import torch
import yaml
from safetensors.torch import save as save_safetensors

from common.io import atomic_write_bytes, atomic_write_json, file_sha256
from models.loaders import config_value, load_strict, read_weights, require_file
from models.process import make_process
from models.tauldr import TauLDRImageNet, TauLDRModel, UNetConfig
from models.tauldr_sequence import TauLDRSequenceNet, TransformerConfig

IMAGE_MODEL = "GaussianTargetRateImageX0PredEMA"
SEQUENCE_MODEL = "UniformRateSequenceTransformerEMA"
TRANSFORMER_KEYS = ("num_layers", "d_model", "num_heads", "dim_feedforward", "dropout", "num_output_FFresiduals",
                    "time_scale_factor", "temb_dim", "use_one_hot_input")
EMA_KEYS = ("ema_decay", "ema_num_updates", "ema_shadow_params")
UNET_KEYS = ("ch", "num_res_blocks", "num_scales", "ch_mult", "input_channels", "scale_count_to_put_attn",
             "data_min_max", "dropout", "skip_rescale", "time_embed_dim", "time_scale_factor", "fix_logistic")


def _read_yaml(path: Path) -> dict:
    try:
        cfg = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ValueError(f"{path}: not plain YAML: {err}") from None
    if not isinstance(cfg, dict):
        raise ValueError(f"{path}: expected a YAML mapping, got {type(cfg).__name__}")
    return cfg


def unet_config_from_tauldr(cfg: dict, source: Path) -> UNetConfig:
    """The network of a published tauLDR training config (model.*, data.S, data.shape)."""
    m = config_value(cfg, "model", source)
    missing = [k for k in UNET_KEYS if k not in m]
    if missing:
        raise ValueError(f"{source}: config lacks model keys {missing}")
    S, shape = int(config_value(cfg, "data.S", source)), list(config_value(cfg, "data.shape", source))
    if m["num_scales"] != len(m["ch_mult"]):
        raise ValueError(f"{source}: model.num_scales is {m['num_scales']} but model.ch_mult {m['ch_mult']} "
                         f"has {len(m['ch_mult'])} entries")
    if len(shape) != 3 or m["input_channels"] != shape[0]:
        raise ValueError(f"{source}: model.input_channels {m['input_channels']} does not match data.shape {shape} "
                         f"(expected [C, H, W] with C = input_channels)")
    keep = [k for k in UNET_KEYS if k not in ("num_scales", "input_channels")]
    try:
        return UNetConfig(S=S, shape=tuple(shape), **{k: m[k] for k in keep})
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from None


def process_spec_from_tauldr(cfg: dict, source: Path) -> dict:
    """tauLDR's GaussianTargetRate: the Gaussian-target kernel under exponential noise."""
    m = config_value(cfg, "model", source)
    missing = [k for k in ("rate_sigma", "Q_sigma", "time_base", "time_exponential") if k not in m]
    if missing:
        raise ValueError(f"{source}: config lacks model keys {missing}")
    return {"noise": {"name": "exponential", "time_base": float(m["time_base"]),
                      "time_exponential": float(m["time_exponential"])},
            "kernel": {"name": "gaussian", "num_states": int(config_value(cfg, "data.S", source)),
                       "rate_sigma": float(m["rate_sigma"]), "Q_sigma": float(m["Q_sigma"])}}


def transformer_config_from_tauldr(cfg: dict, source: Path) -> TransformerConfig:
    """The network of a published tauLDR sequence config (model.*, data.S, data.shape = [L])."""
    m = config_value(cfg, "model", source)
    missing = [k for k in TRANSFORMER_KEYS if k not in m]
    if missing:
        raise ValueError(f"{source}: config lacks model keys {missing}")
    shape = list(config_value(cfg, "data.shape", source))
    if len(shape) != 1:
        raise ValueError(f"{source}: data.shape {shape} is not [L]: tauLDR's sequence model reads 1-D data")
    try:
        return TransformerConfig(S=int(config_value(cfg, "data.S", source)), length=int(shape[0]), long_times=True,
                                 **{k: m[k] for k in TRANSFORMER_KEYS})
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from None


def uniform_process_spec_from_tauldr(cfg: dict, source: Path) -> dict:
    """tauLDR's UniformRate: Q = r(11ᵀ − S·I), constant in time, i.e. the uniform kernel 11ᵀ/S − I
    under σ̄(t) = r·S·t."""
    rate, S = float(config_value(cfg, "model.rate_const", source)), int(config_value(cfg, "data.S", source))
    # rounded: 0.03 × 129 is 3.8699999999999997 in floats, and the experiment's process says 3.87
    return {"noise": {"name": "constant", "value": round(rate * S, 12)}, "kernel": {"name": "uniform", "num_states": S}}


# model.name -> (network config reader, process reader)
PUBLISHED = {IMAGE_MODEL: (unet_config_from_tauldr, process_spec_from_tauldr),
             SEQUENCE_MODEL: (transformer_config_from_tauldr, uniform_process_spec_from_tauldr)}
# the project format's `architecture` -> its network config
ARCHITECTURES = {"unet": UNetConfig, "transformer": TransformerConfig}


def build_strict(config: UNetConfig | TransformerConfig, state: dict, source: Path, prefix: str = ""):
    """The network of `config` holding `state` (keys as in the network; `prefix` is how the file spells them)."""
    net_class = TauLDRSequenceNet if isinstance(config, TransformerConfig) else TauLDRImageNet
    name = "tauLDR transformer" if net_class is TauLDRSequenceNet else "tauLDR UNet"
    return load_strict(net_class(config), state, source, name, prefix)


def _latest(directory: Path, pattern: str) -> Path | None:
    found = sorted(directory.glob(pattern))  # tauLDR zero-pads the numbers: name order is age order
    return found[-1] if found else None


def _run_files(d: Path) -> tuple[Path, Path]:
    if not d.is_dir():
        raise FileNotFoundError(f"tauLDR run directory {str(d)!r} does not exist")
    cfg_path = d / "config.yaml" if (d / "config.yaml").is_file() else _latest(d / "config", "config_*.yaml")
    ckpt_path = d / "ckpt.pt" if (d / "ckpt.pt").is_file() else _latest(d / "checkpoints", "ckpt_*.pt")
    if cfg_path is None:
        raise FileNotFoundError(f"tauLDR run directory {str(d)!r} holds neither config.yaml nor config/config_*.yaml")
    if ckpt_path is None:
        raise FileNotFoundError(f"tauLDR run directory {str(d)!r} holds neither ckpt.pt nor checkpoints/ckpt_*.pt")
    return cfg_path, ckpt_path


def _read_checkpoint(path: Path) -> dict:
    try:
        ckpt = read_weights(path)
    except pickle.UnpicklingError as err:
        raise ValueError(f"cannot read {str(path)!r} with torch.load(weights_only=True): it holds Python objects "
                         f"beyond tensors and containers ({err}); a published tauLDR checkpoint does not") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise ValueError(f"{path}: expected a tauLDR checkpoint {{model, optimizer, n_iter}}, "
                         f"got keys {sorted(ckpt) if isinstance(ckpt, dict) else type(ckpt).__name__}")
    return ckpt


def load_tauldr_run(directory: str | Path, **runtime) -> TauLDRModel:
    """runtime: TauLDRModel's chunk."""
    d = Path(directory)
    cfg_path, ckpt_path = _run_files(d)
    cfg = _read_yaml(cfg_path)
    name = config_value(cfg, "model.name", cfg_path)
    if name not in PUBLISHED:
        raise ValueError(f"{cfg_path}: model.name is {name!r}; this loader reads tauLDR's {sorted(PUBLISHED)}")
    read_network, read_process = PUBLISHED[name]
    config, spec = read_network(cfg, cfg_path), read_process(cfg, cfg_path)

    state = _read_checkpoint(ckpt_path)["model"]
    missing = [k for k in EMA_KEYS if k not in state]
    if missing:
        raise ValueError(f"{ckpt_path}: checkpoint['model'] lacks {missing}: not an EMA model's checkpoint")
    raw = {}
    for key, value in state.items():
        if key in EMA_KEYS:
            continue
        key = key.replace(".module.", ".")  # multi-GPU (DDP) runs save net.module.*
        if not key.startswith("net."):
            raise ValueError(f"{ckpt_path}: unexpected key {key!r} in checkpoint['model']; expected net.* and {list(EMA_KEYS)}")
        raw[key[len("net."):]] = value
    net = build_strict(config, raw, ckpt_path, prefix="net.")

    shadow, params = state["ema_shadow_params"], list(net.named_parameters())
    if not isinstance(shadow, (list, tuple)) or len(shadow) != len(params):
        count = len(shadow) if isinstance(shadow, (list, tuple)) else type(shadow).__name__
        raise ValueError(f"{ckpt_path}: checkpoint['model']['ema_shadow_params'] holds {count} tensors for "
                         f"{len(params)} parameters")
    with torch.no_grad():
        for i, ((key, p), s) in enumerate(zip(params, shadow)):
            if tuple(s.shape) != tuple(p.shape):
                raise ValueError(f"{ckpt_path}: ema_shadow_params[{i}] (for 'net.{key}') has shape {tuple(s.shape)}, "
                                 f"expected {tuple(p.shape)}")
            p.copy_(s)
    identity = {"format": "run", "path": str(d), "weights_sha256": file_sha256(ckpt_path)}
    return TauLDRModel(net, make_process(spec), identity, **runtime)


def load_tauldr_project(directory: str | Path, **runtime) -> TauLDRModel:
    """runtime: TauLDRModel's chunk."""
    d = Path(directory)
    cfg_path, w_path = require_file(d / "config.yaml"), require_file(d / "model.safetensors")
    cfg = _read_yaml(cfg_path)
    if cfg.get("format") != "jys-tauldr":
        raise ValueError(f"{cfg_path}: not a project tauLDR checkpoint config (format: jys-tauldr expected, "
                         f"got {cfg.get('format')!r})")
    network = config_value(cfg, "network", cfg_path)
    architecture = cfg.get("architecture", "unet")  # absent in files written before the transformer
    if architecture not in ARCHITECTURES:
        raise ValueError(f"{cfg_path}: architecture {architecture!r}; expected one of {sorted(ARCHITECTURES)}")
    spec = {"noise": dict(config_value(cfg, "process.noise", cfg_path)), "kernel": dict(config_value(cfg, "process.kernel", cfg_path))}
    try:
        config = ARCHITECTURES[architecture](**network)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{cfg_path}: bad network section: {err}") from None
    try:
        process = make_process(spec)
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{cfg_path}: bad process section: {err!r}") from None
    if config.S != process.num_states:
        raise ValueError(f"{cfg_path}: network.S is {config.S} but process.kernel.num_states is {process.num_states}")
    net = build_strict(config, read_weights(w_path), w_path)
    identity = {"format": "project", "path": str(d), "weights_sha256": file_sha256(w_path)}
    return TauLDRModel(net, process, identity, **runtime)


def export_tauldr(net: TauLDRImageNet | TauLDRSequenceNet, process_spec: dict, out_dir: str | Path, note: dict) -> None:
    """The weights `net` holds (pass the EMA copy) as safetensors + config.yaml + training.json (`note`),
    each written atomically; load_tauldr_project reads them back."""
    num_states = make_process(process_spec).num_states
    if num_states != net.config.S:
        raise ValueError(f"export_tauldr: the network has S = {net.config.S} but the process has {num_states} states")
    out_dir = Path(out_dir)
    state = {k: v.detach().cpu().contiguous().clone() for k, v in net.state_dict().items()}
    atomic_write_bytes(out_dir / "model.safetensors", save_safetensors(state))
    architecture = "transformer" if isinstance(net, TauLDRSequenceNet) else "unet"
    config = {"format": "jys-tauldr", "architecture": architecture, "network": net.config.to_dict(),
              "process": process_spec}
    atomic_write_bytes(out_dir / "config.yaml", yaml.safe_dump(config, sort_keys=False).encode())
    atomic_write_json(out_dir / "training.json", note)


LOADERS = {"project": load_tauldr_project, "run": load_tauldr_run}


def load_tauldr(fmt: str, path: str | Path, **runtime) -> TauLDRModel:
    """runtime: TauLDRModel's chunk."""
    if fmt not in LOADERS:
        raise ValueError(f"unknown tauLDR checkpoint format {fmt!r}; expected one of {sorted(LOADERS)}")
    return LOADERS[fmt](path, **runtime)
