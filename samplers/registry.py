"""What each sampler can do, declared once: the grid it takes, the kernels it runs on, whether it ends with the
noise-removal call at ε, whether it conditions on a prefix. samplers.loop, the JYS search, the scripts
(`python -m samplers.registry`, for scripts/common.sh) read it from here. Plain Python: no torch import, so a
shell asks in a fraction of a second."""
from __future__ import annotations

import sys
from dataclasses import dataclass

KERNELS = ("absorbing", "uniform", "ordinal")


@dataclass(frozen=True)
class SamplerSpec:
    name: str
    grid: str  # 'time' (a decreasing time grid), 'count' (reveals the grid's counts k(t_i) of tokens), 'none'
    kernels: tuple[str, ...]  # the kernels it runs on
    noise_removal: bool  # ends with the noise-removal call at ε (one more model call than grid steps)
    prefix: bool  # conditional generation (a prefix held in place)
    schedule: bool  # takes a JYS schedule (first_hitting is exact; eb chooses its counts as it goes)
    calls_per_step: int = 1  # model calls per grid step (the θ-trapezoidal step: two)
    multi_jump: bool = False  # reads `multi_jump` (τ-leaping's rule for a position with several jumps in one step)
    step_rule: str | None = None  # J's one-step term of its step (jys.klub.step_terms; 'trapezoidal': J of its two
    # leaps, jys.lattice); None: not derived, or exact


CATEGORICAL = ("absorbing", "uniform")
SPECS = {s.name: s for s in (
    SamplerSpec("euler", "time", KERNELS, noise_removal=True, prefix=True, schedule=True, step_rule="euler"),
    SamplerSpec("tau_leaping", "time", KERNELS, noise_removal=True, prefix=True, schedule=True, multi_jump=True,
                step_rule="tau_leaping"),
    SamplerSpec("tweedie", "time", CATEGORICAL, noise_removal=True, prefix=True, schedule=True, step_rule="tweedie"),
    SamplerSpec("trapezoidal", "time", KERNELS, noise_removal=True, prefix=True, schedule=True, calls_per_step=2,
                multi_jump=True, step_rule="trapezoidal"),
    SamplerSpec("remdm", "time", ("absorbing",), noise_removal=True, prefix=True, schedule=True),
    SamplerSpec("kgillespie", "count", ("absorbing",), noise_removal=False, prefix=False, schedule=True),
    SamplerSpec("confidence", "count", ("absorbing",), noise_removal=False, prefix=False, schedule=True),
    SamplerSpec("dus", "count", ("absorbing",), noise_removal=False, prefix=False, schedule=True),
    SamplerSpec("klass", "count", ("absorbing",), noise_removal=False, prefix=False, schedule=True),
    SamplerSpec("eb", "none", ("absorbing",), noise_removal=False, prefix=True, schedule=False),
    SamplerSpec("first_hitting", "none", ("absorbing",), noise_removal=False, prefix=True, schedule=False),
)}
SAMPLERS = tuple(SPECS)
COUNT_GRID = tuple(n for n, s in SPECS.items() if s.grid == "count")
NOISE_REMOVAL = tuple(n for n, s in SPECS.items() if s.noise_removal)


def spec(name: str) -> SamplerSpec:
    if name not in SPECS:
        raise ValueError(f"unknown sampler {name!r}; expected one of {list(SAMPLERS)}")
    return SPECS[name]


def kernel_kind(kernel) -> str:
    """'absorbing', 'uniform' or 'ordinal': the kernel as SamplerSpec.kernels names it."""
    return "absorbing" if kernel.mask is not None else "ordinal" if kernel.ordinal else "uniform"


def check_sampler(name: str, process) -> None:
    """Refuses an unknown sampler or one that cannot run on this process's kernel, naming both."""
    kind = kernel_kind(process.kernel)
    if kind not in spec(name).kernels:
        raise ValueError(f"sampler {name!r} needs an {' or '.join(spec(name).kernels)} kernel, not the {kind} kernel "
                         f"{type(process.kernel).__name__}")


def steps_for_calls(name: str, calls: int) -> int:
    """The grid steps that a budget of `calls` model calls per sequence buys: (calls − the noise-removal call) /
    calls per step, rounded down (a two-call step under an even budget leaves one call unspent)."""
    s = spec(name)
    steps = (calls - (1 if s.noise_removal else 0)) // s.calls_per_step
    if steps < 1:
        raise ValueError(f"{name} needs at least {s.calls_per_step + s.noise_removal} model calls per sequence, "
                         f"got a budget of {calls}")
    return steps


def check_prefix_support(name: str) -> None:
    """Refuses conditional generation (a prefix) for a sampler that cannot hold one (the count-grid samplers count
    their grid over all L tokens)."""
    if not spec(name).prefix:
        able = ", ".join(n for n, s in SPECS.items() if s.prefix)
        raise ValueError(f"{name} counts its grid over all L tokens; conditional generation (a prefix, "
                         f"experiment.condition.prefix) is not supported there yet: use {able}")


def main(argv: list[str]) -> None:
    """python -m samplers.registry FIELD NAME: one field of a sampler's spec (grid, kernels, ...), for scripts;
    python -m samplers.registry steps NAME CALLS: the grid steps a budget of model calls buys."""
    fields = list(SamplerSpec.__dataclass_fields__)
    if len(argv) == 3 and argv[0] == "steps":
        try:
            print(steps_for_calls(argv[1], int(argv[2])))
        except ValueError as err:
            sys.exit(f"error: {err}")
        return
    if len(argv) != 2 or argv[0] not in fields:
        sys.exit(f"usage: python -m samplers.registry {{{','.join(fields)}}} SAMPLER | steps SAMPLER CALLS")
    try:
        value = getattr(spec(argv[1]), argv[0])
    except ValueError as err:
        sys.exit(f"error: {err}")
    print(" ".join(value) if isinstance(value, tuple) else "none" if value is None else str(value).lower())


if __name__ == "__main__":
    main(sys.argv[1:])
