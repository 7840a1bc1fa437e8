"""python -m samplers experiment=count model=oracle sampler=euler schedule=uniform nfe=16 num_samples=1024 seed=0

Batch k of batch_size samples draws from its own generator (seed for k = 0, a seed derived from (seed, k)
otherwise), so `torchrun --nproc_per_node=P -m samplers ...` runs batch k on rank k mod P and rank 0 writes
the same samples as one process; the file records world_size, the number of processes that made it."""
import json
import time

import hydra
import numpy as np
import torch
from omegaconf import DictConfig

from common import dist
from common.io import atomic_write_npz
from pipeline.build import build_model, setup_torch
from pipeline.experiment import experiment_of
from pipeline.runs import (FORMAT_VERSION, artifact_path, dus_order, eb_gamma, key_differences, klass_settings,
                           remdm_settings, resolve_schedule, samples_key, step_thetas)
from pipeline.search import check_searched_as, searched_as, settings_from
from samplers.loop import batch_seed, check_sizes, run_sampler

HASHES = ("weights_sha256", "chain_sha256")


def check_schedule_model(schedule: dict, identity: dict, label: str) -> None:
    """A JYS schedule file records the model it was searched for; one searched for other weights or
    another chain is refused rather than silently applied to this model."""
    made_for = schedule.get("model")
    if not isinstance(made_for, dict):
        return
    for h in HASHES:
        if h in made_for and h in identity and made_for[h] != identity[h]:
            raise ValueError(f"schedule {label!r} was searched for a model with {h} {made_for[h][:12]}..., but this "
                             f"model has {identity[h][:12]}...; rerun `python -m jys` with the same overrides")


@hydra.main(config_path="../configs", config_name="config", version_base=None)
@dist.exit_on_error
def main(cfg: DictConfig) -> None:
    dist.init()
    setup_torch(cfg)
    model = build_model(cfg)
    if hasattr(model, "describe"):
        print(model.describe())
    label, grid, nfe, schedule = resolve_schedule(cfg)
    if cfg.sampler == "remdm" and remdm_settings(cfg).strategy == "loop" and label != "uniform":
        raise ValueError(f"remdm.strategy=loop reads the grid as ReMDM's own clock, so it takes schedule=uniform, not "
                         f"{label!r} (a schedule of process times): use remdm.strategy=cap or rescale with it")
    key = samples_key(cfg, grid, model, schedule)
    check_schedule_model(schedule, key["model_identity"], label)
    if str(cfg.schedule) == "jys" and schedule:  # today's defaults' schedule, not one an older search left in runs/
        check_searched_as(schedule, searched_as(settings_from(cfg), model, str(cfg.sampler)),
                          f"schedule=jys ({cfg.sampler}, nfe={nfe})")
    experiment = experiment_of(cfg)
    if schedule and int(schedule.get("prefix") or 0) != experiment.prefix:
        raise ValueError(f"schedule {label!r} was searched with a condition prefix of {schedule.get('prefix') or 0} "
                         f"tokens, but experiment.condition.prefix is {experiment.prefix}; rerun `python -m jys`")
    path = artifact_path(cfg, "samples", label, nfe, "npz")
    if path.is_file() and not cfg.overwrite:
        with np.load(path) as f:
            stored = json.loads(str(f["config"]))
        if stored == key:
            print(f"{cfg.sampler} / {label}: {path} already holds these samples (overwrite=true to redo)")
            return
        print(f"{cfg.sampler} / {label}: {path} holds other samples ({'; '.join(key_differences(stored, key))}); "
              "redoing them")
    prefix = experiment.prefixes(int(cfg.num_samples))  # None unless experiment.condition.prefix > 0
    n, bs = int(cfg.num_samples), int(cfg.batch_size)
    check_sizes(n, bs)
    starts = list(range(0, n, bs))
    start = time.time()
    done = {}
    for k, first in enumerate(starts):
        if not dist.mine(k):
            continue
        size = min(bs, n - first)
        res = run_sampler(model, cfg.sampler, grid, size, int(cfg.experiment.length),
                          torch.Generator().manual_seed(batch_seed(int(cfg.seed), k)), batch_size=size,
                          final_step=cfg.final_step, progress=cfg.progress,
                          prefix=None if prefix is None else prefix[first:first + size], multi_jump=str(cfg.multi_jump),
                          confidence=str(cfg.unmask.confidence),
                          gamma=eb_gamma(cfg) if cfg.sampler == "eb" else 1.0,
                          remdm=remdm_settings(cfg) if cfg.sampler == "remdm" else None,
                          klass=klass_settings(cfg) if cfg.sampler == "klass" else None, order=dus_order(cfg),
                          thetas=step_thetas(cfg, schedule))
        calls = res.sequence_calls if res.sequence_calls is not None else torch.full((size,), res.calls_per_batch[0])
        done[k] = (res.samples, calls)
    parts = dist.gather_units(done, len(starts))
    if not dist.is_main():
        return
    samples = torch.cat([p[0] for p in parts])
    sequence_calls = torch.cat([p[1] for p in parts]).double()  # each sequence's model calls
    calls = float(sequence_calls.mean())  # the NFE actually spent, per sequence
    wall = time.time() - start
    atomic_write_npz(path, samples=samples.numpy().astype("int32"), times=grid.numpy(), nfe=-1 if nfe is None else nfe,
                     model_calls=calls, sequence_calls=sequence_calls.numpy(), seed=int(cfg.seed), world_size=dist.world_size(), sampler=cfg.sampler, schedule=label,
                     wall_time=wall, config=json.dumps(key), model_identity=json.dumps(key["model_identity"]),
                     data_identity=json.dumps(key["data_identity"]), format_version=FORMAT_VERSION,
                     prefix=experiment.prefix)
    print(f"{cfg.sampler} / {label}: {samples.shape[0]} samples, grid of {nfe if nfe is not None else 'no'} steps, "
          f"{calls:g} model calls (NFE spent), {wall:.1f} s on {dist.world_size()} process(es) -> {path}")


if __name__ == "__main__":
    try:
        main()
    finally:
        dist.finish()
