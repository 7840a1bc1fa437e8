"""figures.ipynb on a runs/ fixture made by the real pipeline (CountDown on the exact oracle, tiny sizes): it
executes headless, writes the figures whose runs exist, and names the command that makes each of the others."""
import subprocess
import sys
from pathlib import Path

import matplotlib.image
import numpy as np
import pytest
import torch

import metrics.__main__ as metrics_main
import samplers.__main__ as samplers_main
from pipeline.search import optimize_config
from results import figures

ROOT = Path(__file__).resolve().parents[2]
CALLS = (4, 8)  # NFE = model calls per sequence: Euler's grid has NFE - 1 steps and the noise-removal call


@pytest.fixture
def one_thread():
    """Tensors this small gain nothing from a second thread, and lose several-fold when the cores are busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_count_runs(make_cfg, runs) -> None:
    """What bash scripts/count.sh makes for the oracle, at 32 tokens, 64 samples and 8 KLUB samples."""
    tiny = ("experiment=count", "model=oracle", "sampler=euler", "seed=0", "experiment.length=32",
            f"experiment.data.dir={runs / 'datasets'}", "experiment.data.num_train=64", "experiment.data.num_valid=16",
            "jys.num_samples=8", "jys.lattice_samples=8", "num_samples=64")
    for calls in CALLS:
        optimize_config(make_cfg(*tiny, f"nfe={calls - 1}"))
        for schedule in ("uniform", "cosine", "jys"):  # count.sh's (figures.SCHEDULES also names others' schedules)
            cfg = make_cfg(*tiny, f"nfe={calls - 1}", f"schedule={schedule}")
            samplers_main.main.__wrapped__(cfg)
            metrics_main.main.__wrapped__(cfg)
    subprocess.run([sys.executable, "-m", "results", "table", "count", "--runs", str(runs), "--models", "oracle",
                    "--samplers", "euler", "--nfes", *map(str, CALLS)], cwd=ROOT, check=True, capture_output=True)


@pytest.mark.slow
def test_notebook_draws_the_figures_that_have_runs_and_names_the_command_for_the_others(make_cfg, tmp_path, one_thread):
    make_count_runs(make_cfg, tmp_path)  # make_cfg writes under runs_dir=tmp_path
    assert (tmp_path / "count" / "results.json").is_file()
    out = tmp_path / "docs"
    nb = figures.execute_notebook(ROOT / "figures.ipynb", tmp_path, out, save_to=tmp_path / "figures.ipynb")

    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    for command in ("scripts/cifar.sh", "scripts/piano.sh", "scripts/text.sh", "scripts/ablation_klub.sh"):
        assert f"run bash {command}" in text, command
    assert "scripts/count.sh" not in text  # Fig. 5 and Fig. 9's absorbing panel had their runs
    assert sum("image/png" in o.get("data", {}) for o in outputs) == 2  # Fig. 5 and Fig. 9 shown inline

    for name in ("fig5_count.png", "fig9_schedules.png"):
        image = matplotlib.image.imread(out / name)
        assert image.shape[0] > 200 and image.shape[1] > 200, name
        assert np.ptp(image[..., :3]) > 0.5, f"{name} is blank"
    assert sorted(p.name for p in out.iterdir()) == ["fig5_count.png", "fig9_schedules.png"]
