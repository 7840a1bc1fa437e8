"""torchrun with 2 gloo processes gives what one process gives: the same samples, the same schedule, the same
training loss curve (to rounding), and a training run resumes with another number of processes."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from pipeline.build import build_model
from samplers.loop import run_sampler
from samplers.schedules import uniform

ORACLE = ["experiment=count_uniform_const", "experiment.length=32", "experiment.data=null", "model=oracle",
          "sampler=tau_leaping", "progress=false", "threads=1"]


def run(module: str, args: list[str], procs: int) -> str:
    """python -m module args, or the same under torchrun with `procs` processes; its stdout."""
    launch = [sys.executable, "-m", module] if procs == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}", "-m", module]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(launch + args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_sampling_with_two_processes_writes_the_same_samples(tmp_path, make_cfg):
    """Three batches of 32 (ranks 0, 1, 0): the samples array and the reuse key equal one process's, and the
    file records how many processes made it; run_sampler given the seed (as the scripts and benchmarks call it)
    draws the same per-batch streams."""
    cell = ORACLE + ["schedule=uniform", "nfe=8", "num_samples=96", "batch_size=32", "seed=3"]
    files = {}
    for procs in (1, 2):
        run("samplers", cell + [f"runs_dir={tmp_path / str(procs)}"], procs)
        files[procs] = np.load(tmp_path / str(procs) / "count_uniform_const" / "oracle" / "samples"
                               / "tau_leaping-uniform-nfe8-seed3.npz")
    one, two = files[1], files[2]
    assert one["samples"].shape == (96, 32)
    assert np.array_equal(one["samples"], two["samples"])
    assert str(one["config"]) == str(two["config"])
    assert (int(one["world_size"]), int(two["world_size"])) == (1, 2)
    assert not np.array_equal(one["samples"][:32], one["samples"][32:64])  # batches draw streams of their own
    cfg = make_cfg(*cell)
    direct = run_sampler(build_model(cfg), "tau_leaping", uniform(8, float(cfg.eps)), 96, 32, 3, batch_size=32,
                         final_step=str(cfg.final_step), progress=False)
    assert np.array_equal(direct.samples.numpy(), one["samples"])


def schedules_on_one_and_two_ranks(tmp_path, args: list[str], name: str) -> tuple[dict, dict]:
    """`python -m jys` on the oracle with these overrides under 1 and under 2 processes: the two schedule records."""
    records = []
    for procs in (1, 2):
        run("jys", ORACLE + args + [f"runs_dir={tmp_path / str(procs)}"], procs)
        path = tmp_path / str(procs) / "count_uniform_const" / "oracle" / "schedules" / name
        records.append(json.loads(path.read_text()))
    return records[0], records[1]


@pytest.mark.slow
def test_search_with_two_processes_finds_the_same_schedule(tmp_path):
    """The KLUB's 64 samples in model-call batches of 24 (some straddling two intervals) split over 2 ranks:
    the same KLUB values at every level (bit for bit) and so the same schedule; the model calls are counted
    over all ranks."""
    one, two = schedules_on_one_and_two_ranks(
        tmp_path, ["nfe=6", "jys.search=hierarchy", "jys.num_samples=64", "jys.batch_size=24"],
        "tau_leaping-jys-hierarchy-nfe6.json")
    assert one["times"] == two["times"] and len(one["times"]) == 7
    assert one["klub_per_level"] == two["klub_per_level"]
    assert one["model_calls"] == two["model_calls"]


@pytest.mark.slow
def test_lattice_search_with_two_processes_finds_the_same_schedule(tmp_path):
    """The default search for this uniform kernel (J's lattice table, then the DP) under 2 ranks: the same grid,
    the same J."""
    one, two = schedules_on_one_and_two_ranks(tmp_path, ["nfe=4", "jys.lattice=8", "jys.lattice_samples=32"],
                                              "tau_leaping-jys-nfe4.json")
    assert one["search"] == "lattice" and one["times"] == two["times"] and len(one["times"]) == 5
    assert one["J"] == two["J"]


@pytest.fixture
def training_args(tmp_path):
    return ["experiment=count", "experiment.length=16", f"experiment.data.dir={tmp_path / 'data'}",
            "experiment.data.num_train=256", "experiment.data.num_valid=64", "train.batch_size=8", "train.warmup=5",
            "train.log_every=1", "train.ckpt_every=10", "train.bf16=false", "train.arch.hidden_size=16",
            "train.arch.cond_dim=8", "train.arch.n_blocks=1", "train.arch.n_heads=2", "train.arch.dropout=0.0",
            "progress=false", "threads=1", "device=cpu"]


DIGITS = ["experiment=digits", "train.batch_size=8", "train.warmup=5", "train.log_every=1", "train.ckpt_every=10",
          "train.bf16=false", "train.arch.ch=8", "train.arch.num_res_blocks=1", "train.arch.dropout=0.0",
          "train.arch.time_embed_dim=8", "train.valid_every=0", "progress=false", "threads=1", "device=cpu"]


def curve(out_dir) -> list[float]:
    note = json.loads((out_dir / "training.json").read_text())
    return [loss for _, loss in note["loss_curve"]], note


@pytest.mark.slow
def test_training_with_two_processes_follows_the_same_loss_curve(tmp_path, training_args):
    """20 steps of a global batch of 8: DDP over 2 ranks (4 sequences each) within 1e-5 relative of one
    process at every step; then a run stopped at step 10 by 2 processes and resumed by 1 ends on the same curve."""
    def train(procs, name, steps):
        run("train", training_args + [f"train.steps={steps}", f"train.out_dir={tmp_path / name}",
                                      f"runs_dir={tmp_path / ('runs-' + name)}"], procs)
        return curve(tmp_path / name)

    one, note_one = train(1, "one", 20)
    two, note_two = train(2, "two", 20)
    assert len(one) == len(two) == 20
    assert np.allclose(two, one, rtol=1e-5, atol=0)
    assert (note_one["world_size"], note_two["world_size"]) == (1, 2)
    train(2, "switch", 10)
    switched, note = train(1, "switch", 20)
    assert note["steps"] == 20 and np.allclose(switched, one, rtol=1e-5, atol=0)


@pytest.mark.slow
def test_tauldr_training_with_two_processes_follows_the_same_loss_curve(tmp_path):
    """tauLDR's UNet and CT-ELBO (the digits model) under DDP: 20 steps of a global batch of 8 on 2 ranks
    within 1e-5 relative of one process."""
    def train(procs, name):
        run("train", DIGITS + ["train.steps=20", f"train.out_dir={tmp_path / name}",
                               f"runs_dir={tmp_path / ('runs-' + name)}"], procs)
        return curve(tmp_path / name)[0]

    one, two = train(1, "one"), train(2, "two")
    assert len(one) == len(two) == 20
    assert np.allclose(two, one, rtol=1e-5, atol=0)
