"""Loaders for SEDD checkpoints: the project's own and the two published formats.

- project: weights/<name>/ with model.safetensors + config.yaml (written by python -m train)
- hf: a Hugging Face directory, config.json + pytorch_model.bin (weights_only) or model.safetensors
- run: a SEDD training run, .hydra/config.yaml + checkpoints-meta/checkpoint.pth (EMA weights used)
Every loader builds the network strictly (no missing or unexpected key) and returns a SEDDModel
with its forward process. Errors name the file and the key.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file

from common.io import file_sha256
from models.process import make_process
from models.sedd import SEDD, SEDDConfig, SEDDModel, check_scale_by_sigma

GRAPHS = {"absorb": "absorbing", "absorbing": "absorbing", "uniform": "uniform"}


def require_file(path: Path) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint file {str(path)!r} does not exist")
    return path


def config_value(cfg: dict, dotted: str, source: Path):
    node = cfg
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ValueError(f"{source}: config lacks key {dotted!r}")
        node = node[part]
    return node


def process_spec_from_sedd(cfg: dict, source: Path) -> dict:
    """The forward process of a published SEDD config (graph.type, noise.type, tokens)."""
    graph = config_value(cfg, "graph.type", source)
    if graph not in GRAPHS:
        raise ValueError(f"{source}: unknown graph type {graph!r}; expected one of {sorted(GRAPHS)}")
    noise_type = config_value(cfg, "noise.type", source)
    noise = cfg["noise"]
    if noise_type == "loglinear":
        noise_spec = {"name": "loglinear", "eps": 1e-3}
    elif noise_type == "geometric":
        noise_spec = {"name": "geometric", "sigma_min": float(noise.get("sigma_min", 1e-4)),
                      "sigma_max": float(noise.get("sigma_max", 20.0))}
    else:
        raise ValueError(f"{source}: unknown noise type {noise_type!r}; expected 'loglinear' or 'geometric'")
    return {"noise": noise_spec, "kernel": {"name": GRAPHS[graph], "num_states": int(config_value(cfg, "tokens", source))}}


def network_config_from_sedd(cfg: dict, source: Path, num_states: int) -> SEDDConfig:
    m = config_value(cfg, "model", source)
    keys = ("hidden_size", "cond_dim", "n_blocks", "n_heads", "scale_by_sigma", "dropout")
    missing = [k for k in keys if k not in m]
    if missing:
        raise ValueError(f"{source}: config lacks model keys {missing}")
    return SEDDConfig(vocab_size=num_states, **{k: m[k] for k in keys})


def load_strict(net: torch.nn.Module, state: dict, source: Path, what: str, prefix: str = "") -> torch.nn.Module:
    """`net` holding `state` in float32, in eval mode; any missing or unexpected key or wrong shape is an
    error naming the file and the key as the file spells it (`prefix` + the network's name)."""
    expected = net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{source}: state dict does not match the {what}: missing keys "
                         f"{[prefix + k for k in missing[:5]]}, unexpected keys {[prefix + k for k in unexpected[:5]]}")
    for k, v in expected.items():
        if tuple(state[k].shape) != tuple(v.shape):
            raise ValueError(f"{source}: key {prefix + k!r} has shape {tuple(state[k].shape)}, expected {tuple(v.shape)}")
    net.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return net.eval()


def build_strict(config: SEDDConfig, state: dict, source: Path) -> SEDD:
    return load_strict(SEDD(config), state, source, "SEDD network")


def read_weights(path: Path) -> dict:
    try:
        if path.suffix == ".safetensors":
            return load_file(path)
        return torch.load(path, map_location="cpu", weights_only=True)
    except (SafetensorError, RuntimeError, EOFError, OSError) as err:
        raise ValueError(f"cannot read weights {str(path)!r} (truncated or not a checkpoint?): {err}") from None


def _model(net: SEDD, spec: dict, identity: dict, runtime: dict) -> SEDDModel:
    spec = {"noise": dict(spec["noise"]), "kernel": dict(spec["kernel"])}
    process = make_process(spec)
    check_scale_by_sigma(net.config, process.kernel, source=identity.get("path", "checkpoint"))
    return SEDDModel(net, process, identity, **runtime)


def load_project(directory: str | Path, **runtime) -> SEDDModel:
    d = Path(directory)
    cfg_path, w_path = require_file(d / "config.yaml"), require_file(d / "model.safetensors")
    cfg = yaml.safe_load(cfg_path.read_text())
    if not isinstance(cfg, dict) or cfg.get("format") != "jys-sedd":
        raise ValueError(f"{cfg_path}: not a project checkpoint config (format: jys-sedd expected)")
    spec = config_value(cfg, "process", cfg_path)
    net = build_strict(SEDDConfig(**config_value(cfg, "network", cfg_path)), read_weights(w_path), w_path)
    return _model(net, spec, {"format": "project", "path": str(d), "weights_sha256": file_sha256(w_path)}, runtime)


def load_hf(directory: str | Path, **runtime) -> SEDDModel:
    d = Path(directory)
    cfg_path = require_file(d / "config.json")
    cfg = json.loads(cfg_path.read_text())
    w_path = d / "model.safetensors" if (d / "model.safetensors").is_file() else require_file(d / "pytorch_model.bin")
    spec = process_spec_from_sedd(cfg, cfg_path)
    num_states = make_process(spec).num_states
    net = build_strict(network_config_from_sedd(cfg, cfg_path, num_states), read_weights(w_path), w_path)
    return _model(net, spec, {"format": "hf", "path": str(d), "weights_sha256": file_sha256(w_path)}, runtime)


def load_run(directory: str | Path, **runtime) -> SEDDModel:
    d = Path(directory)
    cfg_path = require_file(d / ".hydra" / "config.yaml")
    ckpt_path = require_file(d / "checkpoints-meta" / "checkpoint.pth")
    cfg = yaml.safe_load(cfg_path.read_text())
    spec = process_spec_from_sedd(cfg, cfg_path)
    config = network_config_from_sedd(cfg, cfg_path, make_process(spec).num_states)
    ckpt = read_weights(ckpt_path)
    for key in ("model", "ema"):
        if key not in ckpt:
            raise ValueError(f"{ckpt_path}: checkpoint lacks {key!r}; it has {sorted(ckpt)}")
    shadow = ckpt["ema"].get("shadow_params") if isinstance(ckpt["ema"], dict) else None
    if shadow is None:
        raise ValueError(f"{ckpt_path}: checkpoint['ema'] lacks 'shadow_params'")
    raw = {k.replace("module.", "", 1) if k.startswith("module.") else k: v for k, v in ckpt["model"].items()}
    net = build_strict(config, raw, ckpt_path)
    params = list(net.parameters())
    if len(shadow) != len(params):
        raise ValueError(f"{ckpt_path}: {len(shadow)} EMA shadow tensors for {len(params)} parameters")
    with torch.no_grad():
        for (name, p), s in zip(net.named_parameters(), shadow):
            if tuple(s.shape) != tuple(p.shape):
                raise ValueError(f"{ckpt_path}: EMA shadow for {name!r} has shape {tuple(s.shape)}, expected {tuple(p.shape)}")
            p.copy_(s)
    return _model(net, spec, {"format": "run", "path": str(d), "weights_sha256": file_sha256(ckpt_path)}, runtime)


LOADERS = {"project": load_project, "hf": load_hf, "run": load_run}


def load_sedd(fmt: str, path: str | Path, **runtime) -> SEDDModel:
    """runtime: SEDDModel's precision and chunk."""
    if fmt not in LOADERS:
        raise ValueError(f"unknown checkpoint format {fmt!r}; expected one of {sorted(LOADERS)}")
    return LOADERS[fmt](path, **runtime)
