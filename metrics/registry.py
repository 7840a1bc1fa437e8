"""Metrics by name: `experiment.metrics` lists the names, METRICS maps each to a function.

A metric is f(samples [N, L] int64, context) -> float. The context gives what some metrics need,
built once per evaluation and only when asked for: the config, the experiment's Markov chain.
A new metric family is a module under metrics/ and its entries here (or `register_metric`).
"""
from __future__ import annotations

from typing import Callable

import torch
from omegaconf import DictConfig

from metrics.sequences import chain_invalid_rate, chain_nll, countdown_error, countdown_error_published
from models.chains import MarkovChain
from pipeline.build import build_chain, data_vocab


class MetricContext:
    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self._chain: MarkovChain | None = None

    def chain(self, metric: str) -> MarkovChain:
        """The experiment's chain; an experiment without one (experiment.chain) cannot report `metric`."""
        if self._chain is None:
            self._chain = build_chain(self.cfg, need=f"metric {metric!r}")
        return self._chain


Metric = Callable[[torch.Tensor, MetricContext], float]

METRICS: dict[str, Metric] = {
    "chain_invalid_rate": lambda x, ctx: chain_invalid_rate(x, ctx.chain("chain_invalid_rate")),
    "chain_nll": lambda x, ctx: chain_nll(x, ctx.chain("chain_nll"), float(ctx.cfg.oracle.floor)),
    "countdown_error": lambda x, ctx: countdown_error(x),
    "countdown_error_published": lambda x, ctx: countdown_error_published(x),
}


def register_metric(name: str, fn: Metric) -> None:
    METRICS[name] = fn


def metric_names(cfg: DictConfig) -> list[str]:
    """experiment.metrics, each checked against the registry."""
    names = cfg.experiment.get("metrics")
    if not names:
        raise ValueError(f"experiment {cfg.experiment.name!r} lists no metrics (experiment.metrics); "
                         f"expected a list from {sorted(METRICS)}")
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r} in experiment.metrics of {cfg.experiment.name!r}; "
                         f"expected names from {sorted(METRICS)}")
    return list(names)


def evaluate(cfg: DictConfig, samples: torch.Tensor) -> dict:
    """{metric: value} for the experiment's metrics, in the order the config lists them."""
    names = metric_names(cfg)
    vocab = data_vocab(cfg)
    if samples.numel() and (int(samples.min()) < 0 or int(samples.max()) >= vocab):
        raise ValueError(f"samples hold tokens in [{int(samples.min())}, {int(samples.max())}] but the data has "
                         f"{vocab} tokens (a MASK left by final_step=none?)")
    ctx = MetricContext(cfg)
    return {name: METRICS[name](samples, ctx) for name in names}
