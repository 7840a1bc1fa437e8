"""find_schedule on a network defined here (no experiment, no config): its grid is J's exact optimum on the
lattice (brute force over every grid of the same lattice), and the samplers take it."""
import itertools

import pytest
import torch

from jys.lattice import PathLattice, base_lattice
from jys.schedule import find_schedule
from models.process import make_process
from models.protocol import ModelOutput
from samplers.loop import run_sampler


class TinyNet(torch.nn.Module):
    """A user's model: embeddings of (token, position) and a time feature -> log concrete scores [B, L, S]."""

    def __init__(self, states: int, length: int):
        super().__init__()
        torch.manual_seed(0)
        self.tok, self.pos = torch.nn.Embedding(states, 16), torch.nn.Embedding(length, 16)
        self.out = torch.nn.Linear(17, states)

    def forward(self, x, t):
        h = self.tok(x) + self.pos(torch.arange(x.shape[1]))
        h = torch.cat([h, t.float().reshape(-1, 1, 1).expand(*x.shape, 1)], -1)
        return self.out(torch.tanh(h))


class MyModel:
    """The model protocol: (x_t, t) -> ModelOutput, and the process."""

    def __init__(self, net, process):
        self.net, self.process = net, process

    @torch.no_grad()
    def __call__(self, x, t):
        scores = self.net(x, t).double()
        return ModelOutput("score", scores - scores.gather(-1, x.unsqueeze(-1)))  # 0 at the input token


@pytest.mark.parametrize("kernel", [{"name": "absorbing", "num_states": 5}, {"name": "uniform", "num_states": 5}])
def test_find_schedule_is_the_lattice_optimum_and_samples(kernel):
    process = make_process({"noise": {"name": "loglinear"}, "kernel": kernel})
    model = MyModel(TinyNet(process.num_states, 6), process)
    x0 = torch.randint(0, 5, (16, 6), generator=torch.Generator().manual_seed(1))
    sched = find_schedule(model, x0, nfe=3, sampler="euler", eps=1e-3, lattice=12, seed=2, end="eps")  # 12 = 4 × nfe
    times = sched.times.tolist()
    assert len(times) == 4 and times[0] == 1.0 and times[-1] == 1e-3 and times == sorted(times, reverse=True)
    points = base_lattice(12, 1e-3)
    rule = "none" if kernel["name"] == "absorbing" else "euler"
    objective = "destination" if kernel["name"] == "absorbing" else "girsanov"
    lat = PathLattice(model, x0, points, "tau", 3, objective, "auto", "none", base_points=12, rule=rule)  # the defaults
    every = [lat.grid_value([1.0, *inner, 1e-3]).value for inner in itertools.combinations(points[1:-1], 2)]
    assert sched.J == pytest.approx(min(every), rel=1e-9)
    assert lat.grid_value(times).value == pytest.approx(sched.J, rel=1e-9)
    out = run_sampler(model, "euler", sched.times, 8, 6, 0, progress=False)
    assert out.samples.shape == (8, 6) and int(out.samples.max()) < 5  # data tokens, no mask left


@pytest.mark.parametrize("kernel", [{"name": "absorbing", "num_states": 5}, {"name": "uniform", "num_states": 5}])
def test_find_schedule_places_the_noise_removal_as_the_last_step(kernel):
    """jys.end=denoise (the default for euler with a drawn noise removal): the grid of 3 steps is the first 4 points
    of J's optimum over every grid of 4 steps to ε on the 4-step lattice, brute force; its last time is above ε."""
    process = make_process({"noise": {"name": "loglinear"}, "kernel": kernel})
    model = MyModel(TinyNet(process.num_states, 6), process)
    x0 = torch.randint(0, 5, (16, 6), generator=torch.Generator().manual_seed(1))
    sched = find_schedule(model, x0, nfe=3, sampler="euler", eps=1e-3, lattice=12, seed=2)
    times = sched.times.tolist()
    assert len(times) == 4 and times[0] == 1.0 and times[-1] > 1e-3 and times == sorted(times, reverse=True)
    points = base_lattice(16, 1e-3)  # lattice_size(12, 4 steps) = 16
    rule = "none" if kernel["name"] == "absorbing" else "euler"
    objective = "destination" if kernel["name"] == "absorbing" else "girsanov"
    lat = PathLattice(model, x0, points, "tau", 3, objective, "auto", "none", base_points=16, rule=rule)
    every = {inner: lat.grid_value([1.0, *inner, 1e-3]).value for inner in itertools.combinations(points[1:-1], 3)}
    best = min(every, key=every.get)
    assert times[1:] == pytest.approx(list(best), abs=0) and sched.J == pytest.approx(every[best], rel=1e-9)
    with pytest.raises(ValueError, match="jys.end=denoise .* final_step=argmax"):
        find_schedule(model, x0, nfe=3, sampler="euler", eps=1e-3, lattice=12, end="denoise", final_step="argmax")
    argmax = find_schedule(model, x0, nfe=3, sampler="euler", eps=1e-3, lattice=12, seed=2, final_step="argmax")
    assert argmax.times[-1] == 1e-3  # auto: the argmax is no draw J can charge, the grid stays at ε


def test_find_schedule_refuses_bad_input():
    process = make_process({"noise": {"name": "loglinear"}, "kernel": {"name": "absorbing", "num_states": 5}})
    model = MyModel(TinyNet(6, 6), process)
    x0 = torch.randint(0, 5, (4, 6))
    with pytest.raises(ValueError, match="time-grid samplers .* not 'kgillespie'"):
        find_schedule(model, x0, 3, "kgillespie")
    with pytest.raises(ValueError, match=r"x0 must be data tokens \[M, L\] in \[0, 5\)"):
        find_schedule(model, x0 + 5, 3)
    with pytest.raises(ValueError, match="nfe must be an integer >= 1, got 0"):
        find_schedule(model, x0, 0)
