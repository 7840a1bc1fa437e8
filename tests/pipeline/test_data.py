"""CountDown dataset files and the x_0 that the JYS search draws from them."""
from collections import Counter

import numpy as np
import pytest
import torch

from data import countdown
from metrics.sequences import countdown_error
from pipeline.experiment import experiment_of


def test_build_is_deterministic_valid_and_never_overwrites(tmp_path):
    a = countdown.write_splits(tmp_path / "a", num_train=50, num_valid=10, length=16, seed=3)
    b = countdown.write_splits(tmp_path / "b", num_train=50, num_valid=10, length=16, seed=3)
    train = countdown.read_split(a["train"], vocab=32, length=16)
    assert train.shape == (50, 16)
    assert torch.equal(train, countdown.read_split(b["train"], vocab=32, length=16))
    assert not torch.equal(train[:10], countdown.read_split(a["valid"], vocab=32, length=16))  # splits differ
    assert countdown_error(train) == 0.0
    before = a["train"].read_bytes()
    with pytest.raises(ValueError, match=r"shape \(50, 16\), but \(50, 32\) were asked"):
        countdown.write_splits(tmp_path / "a", num_train=50, num_valid=10, length=32, seed=3)
    assert a["train"].read_bytes() == before


def test_search_data_are_distinct_seeded_rows_of_the_training_file(make_cfg, tmp_path):
    cfg = make_cfg("experiment=count", "experiment.length=16", f"experiment.data.dir={tmp_path / 'data'}",
                   "experiment.data.num_train=40", "experiment.data.num_valid=8")
    x0 = experiment_of(cfg).sample_x0(25, torch.Generator().manual_seed(0))
    rows = np.load(tmp_path / "data" / "train.npy").astype(np.int64)
    drawn, held = Counter(map(tuple, x0.tolist())), Counter(map(tuple, rows.tolist()))
    assert all(held[r] >= k for r, k in drawn.items())  # rows of the file, none drawn twice
    assert torch.equal(x0, experiment_of(cfg).sample_x0(25, torch.Generator().manual_seed(0)))
    with pytest.raises(ValueError, match="asked for 41 data sequences"):
        experiment_of(cfg).sample_x0(41, torch.Generator().manual_seed(0))
