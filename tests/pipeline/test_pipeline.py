"""Config plumbing: which settings make samples reusable, and where a network runs."""
import pytest
import torch

from common.dist import resolve_device
from pipeline.runs import run_config
from samplers.schedules import uniform


def test_samples_are_reused_across_speed_settings_only(make_cfg):
    grid = uniform(4)
    base = run_config(make_cfg("model=count-sedd"), grid)
    for speed_only in ("threads=1", "device=cpu", "model.chunk=8", "progress=true", "jys.num_samples=7"):
        assert run_config(make_cfg("model=count-sedd", speed_only), grid) == base, speed_only
    for meaningful in ("model.precision=fp32", "seed=1", "num_samples=3", "final_step=argmax"):
        assert run_config(make_cfg("model=count-sedd", meaningful), grid) != base, meaningful
    assert run_config(make_cfg("model=count-sedd"), uniform(5)) != base


def test_device_names():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="torch sees no CUDA GPU"):
            resolve_device("cuda")


def test_sampling_seeds_of_one_cell_get_their_own_files(make_cfg):
    """Samples and metrics of seed K ≠ 0 carry -seedK (seed 0 keeps the plain name); a JYS schedule does not."""
    from pipeline.runs import artifact_path

    zero, one = make_cfg("seed=0"), make_cfg("seed=1")
    assert artifact_path(zero, "samples", "uniform", 7, "npz").name == "euler-uniform-nfe7.npz"
    assert artifact_path(one, "samples", "uniform", 7, "npz").name == "euler-uniform-nfe7-seed1.npz"
    assert artifact_path(one, "metrics", "jys", 7, "json").name == "euler-jys-nfe7-seed1.json"
    assert artifact_path(one, "schedules", "jys", 7, "json") == artifact_path(zero, "schedules", "jys", 7, "json")


def test_progress_prints_one_line_per_loop_into_a_log(capsys):
    """Not a terminal (pytest captures stderr): no carriage-return redraws, one closing line per loop."""
    from common.progress import progress

    assert sum(progress(range(5), desc="five", enabled=True)) == 10
    bar = progress(total=3, desc="three", enabled=True)
    for _ in range(3):
        bar.update(1)
    bar.set_postfix(loss="0.5")
    bar.close()
    for _ in progress(range(2), desc="quiet", enabled=False):
        pass
    err = capsys.readouterr().err
    assert "\r" not in err and "quiet" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("five: 5/5 in ") and lines[1].endswith("s (loss=0.5)")
