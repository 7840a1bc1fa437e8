"""Metrics by name: `experiment.metrics` lists the names, METRICS maps each to a function.

A metric is f(samples [N, L] int64, context) -> float (or a str that names what measured it). The
context gives what some metrics need, built once per evaluation and only when asked for: the config, the
experiment's Markov chain, the text judge and tokenizer.
A new metric family is a module under metrics/ and its entries here (or `register_metric`).
"""
from __future__ import annotations

import json
from functools import cached_property
from typing import Callable

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from common.dist import resolve_device
from metrics.fid import frechet_distance, load_extractor
from metrics.music import hellinger_to, mean_and_se
from metrics.sequences import (
    bigram_tv,
    chain_invalid_rate,
    chain_nll,
    chain_reference,
    countdown_error,
    countdown_error_published,
    countdown_error_se,
    token_entropy_gap,
    unigram_tv,
)
from metrics.text import Judge, TextTokenizer, load_judge, perplexity_and_se, text_nlls, token_entropy
from models.chains import MarkovChain
from pipeline.build import build_model
from pipeline.experiment import Experiment, experiment_of
from pipeline.runs import artifact_path, resolve_schedule, samples_key


class MetricContext:
    def __init__(self, cfg: DictConfig):
        self.cfg = cfg
        self._memo: dict = {}

    @cached_property
    def experiment(self) -> Experiment:
        """The config's experiment, built when a metric first needs it (the judge alone never does)."""
        return experiment_of(self.cfg)

    def chain(self, metric: str) -> MarkovChain:
        """The experiment's chain; an experiment without one (experiment.chain) cannot report `metric`."""
        return self.experiment.need_chain(f"metric {metric!r}")

    def exact_chain(self, metric: str) -> MarkovChain:
        """The law the oracle is exact for: the experiment's chain mixed with oracle.floor."""
        if "exact_chain" not in self._memo:
            self._memo["exact_chain"] = self.chain(metric).mixed(float(self.cfg.oracle.floor))
        return self._memo["exact_chain"]

    def chain_reference(self, samples: torch.Tensor, metric: str) -> torch.Tensor:
        """Sequences of exact_chain continuing the samples' own prefixes (metrics/sequences.py chain_reference:
        at least 4096, rows 0..N−1 paired with the samples), seed metrics.reference_seed; drawn once."""
        key = ("chain_reference", id(samples))
        if key not in self._memo:
            g = torch.Generator().manual_seed(int(self.cfg.metrics.reference_seed))
            self._memo[key] = chain_reference(samples, self.exact_chain(metric), self.experiment.prefix, g)
        return self._memo[key]

    def truth(self) -> str:
        """experiment.truth: where the true sequences come from: data (the held-out split, the default) or
        chain (the experiment's chain with the oracle's floor: an oracle twin of a real-data experiment)."""
        truth = str(self.cfg.experiment.get("truth") or "data")
        if truth not in ("data", "chain"):
            raise ValueError(f"experiment.truth={truth!r}; expected data or chain")
        return truth

    def tokenizer(self) -> TextTokenizer:
        """The model's tokenizer: `tokenizer.path`, else the model config's `tokenizer`; checked against the vocabulary."""
        if "tokenizer" not in self._memo:
            path = self.cfg.get("tokenizer", {}).get("path") or self.cfg.model.get("tokenizer")
            if not path:
                raise ValueError(f"model {self.cfg.model.name!r} names no tokenizer: set tokenizer.path=DIR "
                                 "(a Hugging Face tokenizer directory or tokenizer.json)")
            tok = TextTokenizer(path)
            tok.check_vocab(self.experiment.vocab)
            self._memo["tokenizer"] = tok
        return self._memo["tokenizer"]

    def judge(self) -> Judge:
        """The judge LM of `metrics.judge` (and `metrics.judge_path`), loaded once."""
        if "judge" not in self._memo:
            m = self.cfg.metrics
            dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}.get(m.judge_dtype)
            if dtype is None:
                raise ValueError(f"unknown metrics.judge_dtype {m.judge_dtype!r}; expected fp32 or bf16")
            self._memo["judge"] = load_judge(m.judge, m.judge_path, resolve_device(self.cfg.get("device", "auto")), dtype)
        return self._memo["judge"]

    def fid(self, samples: torch.Tensor, features: str) -> float:
        """Fréchet distance of image samples to the training split through the `features` extractor
        (metrics/fid.py); images of `experiment.image_shape`, flattened CHW."""
        shape = self.cfg.experiment.get("image_shape")
        if shape is None:
            raise ValueError(f"experiment {self.cfg.experiment.name!r} has no image_shape: FID needs images")
        if ("fid_reference",) not in self._memo:
            self._memo[("fid_reference",)] = self.experiment.load("train")
        if ("extractor", features) not in self._memo:
            self._memo[("extractor", features)] = load_extractor(features, self.cfg.metrics.get("inception_path"))
        return frechet_distance(samples, self._memo[("fid_reference",)], self._memo[("extractor", features)],
                                tuple(shape), self.experiment.vocab, self.cfg.metrics.get("inception_path"))

    def hellinger(self, samples: torch.Tensor, against: str) -> tuple[float, float]:
        """Mean and standard error over sequences of the note-histogram Hellinger distance of the generated
        part (metrics/music.py) against the true continuations ('true': row i mod N of the condition split,
        whose prefix sample i continues; with experiment.truth=chain, a continuation of sample i's prefix drawn
        from the chain with the oracle's floor, the law the oracle is exact for) or the reference samples
        ('ref': same sampler, uniform grid of metrics.reference_nfe steps, seed metrics.reference_seed, from
        the same prefixes)."""
        key = ("hellinger", against, id(samples))
        if key not in self._memo:
            K = self.experiment.prefix
            if against == "true" and self.truth() == "chain":
                reference = self.chain_reference(samples, f"hellinger_{against}")[: samples.shape[0]]
            elif against == "true":
                reference = self.experiment.condition_rows(samples.shape[0])
            else:
                reference = self._reference_samples(samples.shape[0])
            self._memo[key] = mean_and_se(hellinger_to(samples, reference, K, self.experiment.vocab))
        return self._memo[key]

    def _reference_samples(self, num: int) -> torch.Tensor:
        """The reference samples file, refused unless its stored key is the one `python -m samplers` would
        write now for the reference cell (same model weights, process, eps, final step, prefix, count)."""
        m = self.cfg.metrics
        ref_cfg = OmegaConf.merge(self.cfg, {"schedule": "uniform", "nfe": int(m.reference_nfe),
                                             "seed": int(m.reference_seed)})
        path = artifact_path(ref_cfg, "samples", "uniform", int(m.reference_nfe), "npz")
        make = (f"make them with `python -m samplers ... schedule=uniform nfe={m.reference_nfe} "
                f"seed={m.reference_seed} num_samples={num}`")
        if not path.is_file():
            raise FileNotFoundError(f"hellinger_ref needs the reference samples {path}; {make}")
        want = samples_key(ref_cfg, resolve_schedule(ref_cfg)[1], build_model(ref_cfg))
        with np.load(path) as f:
            stored = json.loads(str(f["config"]))
            ref = torch.from_numpy(f["samples"].astype(np.int64))
        if stored != want:
            changed = sorted(k for k in set(stored) | set(want) if stored.get(k) != want.get(k))
            raise ValueError(f"the reference samples {path} were made with other settings (differing in {changed}); "
                             f"{make}")
        if ref.shape[0] < num:
            raise ValueError(f"{path} holds {ref.shape[0]} reference samples, fewer than the {num} to compare")
        return ref[:num]

    def perplexity(self, samples: torch.Tensor) -> tuple[float, float]:
        """The judge's corpus perplexity of the samples and its standard error, one judge pass for both."""
        key = ("perplexity", id(samples))
        if key not in self._memo:
            self._memo[key] = perplexity_and_se(*text_nlls(self.judge(), self.texts(samples),
                                                           int(self.cfg.metrics.judge_batch), bool(self.cfg.progress)))
        return self._memo[key]

    def texts(self, samples: torch.Tensor) -> list[str]:
        key = ("texts", id(samples))
        if key not in self._memo:
            self._memo[key] = self.tokenizer().decode(samples)
        return self._memo[key]


Metric = Callable[[torch.Tensor, MetricContext], "float | str"]

METRICS: dict[str, Metric] = {
    "chain_invalid_rate": lambda x, ctx: chain_invalid_rate(x, ctx.chain("chain_invalid_rate")),
    "chain_nll": lambda x, ctx: chain_nll(x, ctx.chain("chain_nll"), float(ctx.cfg.oracle.floor)),
    "countdown_error": lambda x, ctx: countdown_error(x),
    "countdown_error_se": lambda x, ctx: countdown_error_se(x),  # over sequences
    "countdown_error_published": lambda x, ctx: countdown_error_published(x),
    "gen_ppl": lambda x, ctx: ctx.perplexity(x)[0],
    "gen_ppl_se": lambda x, ctx: ctx.perplexity(x)[1],  # over samples (metrics.text.perplexity_and_se)
    "entropy": lambda x, ctx: token_entropy(x[:, ctx.experiment.prefix:]),  # of the generated part
    "judge": lambda x, ctx: ctx.judge().name,
    "digits_fid": lambda x, ctx: ctx.fid(x, "digits"),  # digits-FID: the digits classifier's features
    "fid": lambda x, ctx: ctx.fid(x, "inception"),      # Inception FID (needs metrics.inception_path)
    # music: note-histogram Hellinger distance of the generated part, mean over tunes and its standard error
    "hellinger_ref": lambda x, ctx: ctx.hellinger(x, "ref")[0],      # against NFE-512 samples (the paper's)
    "hellinger_ref_se": lambda x, ctx: ctx.hellinger(x, "ref")[1],
    "hellinger_true": lambda x, ctx: ctx.hellinger(x, "true")[0],    # against the true continuations
    "hellinger_true_se": lambda x, ctx: ctx.hellinger(x, "true")[1],
    # against the chain the oracle is exact for (metrics/sequences.py), on the generated positions
    "unigram_tv": lambda x, ctx: unigram_tv(x, ctx.exact_chain("unigram_tv"), ctx.experiment.prefix),
    "bigram_tv": lambda x, ctx: bigram_tv(x, ctx.exact_chain("bigram_tv"), ctx.experiment.prefix),
    "token_entropy_gap": lambda x, ctx: token_entropy_gap(x, ctx.chain_reference(x, "token_entropy_gap"),
                                                          ctx.experiment.prefix),
}


# Metrics that score only the generated positions after a condition prefix (the others score whole sequences).
PREFIX_AWARE = {"hellinger_ref", "hellinger_ref_se", "hellinger_true", "hellinger_true_se", "entropy", "unigram_tv",
                "bigram_tv", "token_entropy_gap"}


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
    experiment = experiment_of(cfg)
    vocab = experiment.vocab
    if samples.numel() and (int(samples.min()) < 0 or int(samples.max()) >= vocab):
        raise ValueError(f"samples hold tokens in [{int(samples.min())}, {int(samples.max())}] but the data has "
                         f"{vocab} tokens (a MASK left by final_step=none?)")
    K = experiment.prefix
    whole = [n for n in names if n not in PREFIX_AWARE]
    if K and whole:
        raise ValueError(f"metrics {whole} score whole sequences, but the first {K} tokens are a condition prefix "
                         f"(experiment.condition.prefix); with a prefix use {sorted(PREFIX_AWARE)}")
    ctx = MetricContext(cfg)
    return {name: METRICS[name](samples, ctx) for name in names}
