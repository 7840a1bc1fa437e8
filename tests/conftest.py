import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
torch.set_num_threads(2)


@pytest.fixture
def make_cfg(tmp_path):
    """The project's Hydra config with overrides, writing under a temporary runs_dir."""
    def make(*overrides):
        with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base=None):
            return compose("config", overrides=[f"runs_dir={tmp_path}", "progress=false", *overrides])
    return make
