"""Where each stage's file lives, how `schedule=` resolves to a time grid, and what keys a cached file."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from jys.schedule import DENOISE_STEP
from pipeline.build import model_identity
from pipeline.experiment import experiment_of
from samplers.klass import KLASS
from samplers.registry import spec as sampler_spec
from samplers.remasking import ReMDM
from samplers.schedules import BASELINES, geometric, load_schedule
from samplers.unmasking import check_gamma, dilated_order, load_order, order_digest

# Bump when an algorithm changes what a cached artifact holds (samples, JYS search levels, metrics):
# every cached file then misses its key and is redone.
FORMAT_VERSION = 2  # 2: the Gaussian kernel starts from its exact stationary law
# what the project caches: samples files, search levels, lattice tables, order tables (jys.order), EB's tuned γ, the Beta
# schedule's pair scores
CACHE_KINDS = ("samples", "search", "lattice", "order", "eb", "beta", "refine")


def cache_key(kind: str, payload: dict) -> tuple[dict, str]:
    """The reuse key of a cached file of `kind` (CACHE_KINDS): the payload, which must name everything that fixes
    the file (model and data identities, the settings that change it), with FORMAT_VERSION; and the key's 16-hex
    digest for file names. A stored key that differs from this one means the file is redone, never reused."""
    if kind not in CACHE_KINDS:
        raise ValueError(f"unknown cache kind {kind!r}; expected one of {CACHE_KINDS}")
    key = {**payload, "format_version": FORMAT_VERSION}
    # the key as a stored file reads it back (tuples become lists): else a key with a tuple never matches its file
    return json.loads(json.dumps(key)), hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def run_dir(cfg: DictConfig) -> Path:
    return Path(cfg.runs_dir) / cfg.experiment.name / cfg.model.name


def artifact_path(cfg: DictConfig, stage: str, label: str, nfe: int | None, suffix: str) -> Path:
    """runs/<experiment>/<model>/<stage>/<sampler>-<label>[-nfe<N>][-lastjump|-margin][-seed<K>].<suffix>:
    samples and metrics of τ-leaping with multi_jump=last, of confidence with unmask.confidence=margin, and of
    a seed other than 0, carry it in their name, so several seeds and rules of one cell live side by side (a
    JYS schedule has its own search seed, jys.seed, and serves every sampling seed and rule). EB-Sampler has
    no grid: its label names γ, and it has no -nfe part."""
    seed = int(cfg.get("seed") or 0)
    tag = f"-seed{seed}" if seed and stage in ("samples", "metrics") else ""
    if stage in ("samples", "metrics") and multi_jump(cfg) not in (None, "reject"):
        tag = f"-{multi_jump(cfg)}jump{tag}"  # τ-leaping's other multi-jump rule: never the default's files
    if stage in ("samples", "metrics") and confidence(cfg) not in (None, "max"):
        tag = f"-{confidence(cfg)}{tag}"
    if stage in ("samples", "metrics") and cfg.sampler == "remdm":  # settings other than the defaults name themselves
        r, d = remdm_settings(cfg), ReMDM()
        loop = "" if (r.t_on, r.t_off, r.alpha_on) == (d.t_on, d.t_off, d.alpha_on) else \
            f"-on{r.t_on:g}-off{r.t_off:g}-a{r.alpha_on:g}"
        tag = ("" if r.strategy == "loop" else f"-{r.strategy}") + ("" if r.eta is None else f"-eta{r.eta:g}") + loop + tag
    if stage in ("samples", "metrics") and cfg.sampler == "klass" and klass_settings(cfg) != KLASS():
        k = klass_settings(cfg)
        tag = f"-c{k.conf:g}-kl{k.kl:g}-h{k.history}{tag}"
    order = dus_order(cfg)
    if stage in ("samples", "metrics") and order is not None:
        tag = f"{order_tag(order)}{tag}"
    if stage == "schedules":
        return schedule_path(run_dir(cfg), str(cfg.sampler), label, int(nfe))
    steps = "" if nfe is None else f"-nfe{nfe}"
    return run_dir(cfg) / stage / f"{cfg.sampler}-{label}{steps}{tag}.{suffix}"


def schedule_path(out_dir: Path, sampler: str, label: str, nfe: int) -> Path:
    """out_dir/schedules/<sampler>-<label>-nfe<N>.json: a schedule serves every sampling seed and rule."""
    return Path(out_dir) / "schedules" / f"{sampler}-{label}-nfe{nfe}.json"


def multi_jump(cfg: DictConfig) -> str | None:
    """τ-leaping's rule for a position with several jumps (samplers.steps); None for the other samplers."""
    return str(cfg.get("multi_jump") or "reject") if sampler_spec(cfg.sampler).multi_jump else None


def confidence(cfg: DictConfig) -> str | None:
    """sampler=confidence's position score (samplers.unmasking); None for the other samplers."""
    return str(cfg.unmask.confidence) if cfg.sampler == "confidence" else None


def remdm_settings(cfg: DictConfig) -> ReMDM:
    """sampler=remdm's strategy and rates (samplers.remasking), checked."""
    r = cfg.remdm
    return ReMDM(str(r.strategy), None if r.eta is None else float(r.eta), float(r.t_on), float(r.t_off),
                 float(r.alpha_on))


def klass_settings(cfg: DictConfig) -> KLASS:
    """sampler=klass's thresholds (samplers.klass), checked."""
    k = cfg.unmask.klass
    return KLASS(float(k.conf), float(k.kl), int(k.history))


def dus_order(cfg: DictConfig) -> torch.Tensor | None:
    """sampler=dus's permutation of the positions from unmask.order (a file), checked; None for DUS's dilated order
    and for the other samplers."""
    path = cfg.unmask.get("order")
    if path is None:
        return None
    if cfg.sampler != "dus":
        raise ValueError(f"unmask.order ({path}) is the order sampler=dus reveals positions in; sampler={cfg.sampler} "
                         "takes none (leave unmask.order=null)")
    return load_order(path, int(cfg.experiment.length))


def order_tag(order: torch.Tensor) -> str:
    """The file-name part of a user's order: -perm<first 8 hex of its sha256>, at the end of a JYS schedule's label
    (dus-jys-perm…-nfe8.json) and after the NFE in samples and metrics (dus-jys-nfe8-perm….npz), as other rules'."""
    return f"-perm{order_digest(order)[:8]}"


def eb_gamma(cfg: DictConfig) -> float:
    """sampler=eb's entropy budget per call, checked."""
    return check_gamma(cfg.unmask.gamma)


def jys_label(objective: str, search: str = "auto", weight: str = "auto", order: str = "auto") -> str:
    """The label of a JYS schedule: 'jys' for the defaults (jys.objective=auto, jys.search=auto, jys.weight=auto,
    jys.order=auto), with '-<objective>', '-<search>', '-w<weight>' and '-o<order>' for each setting given otherwise
    (e.g. jys-girsanov-hierarchy, the published search with today's KLUB; jys-reference, the published KLUB);
    jys.search=beta is the peer schedule 'beta' (the Beta mask schedule with its 2-D search), with the same suffixes.
    Schedules of J of the θ-trapezoidal step's two leaps (jys.rule=sampler) add '-rsampler' (pipeline.search.schedule_label)."""
    parts = ["beta" if search == "beta" else "jys"] + [objective] * (objective != "auto") + \
        [search] * (search not in ("auto", "beta"))
    return "-".join(parts) + (f"-w{weight}" if weight != "auto" else "") + (f"-o{order}" if order != "auto" else "")


def resolve_schedule(cfg: DictConfig) -> tuple[str, torch.Tensor, int, dict]:
    """`schedule=` → (label, grid, nfe, file contents or {}).

    'uniform' and 'cosine' are built for `nfe`, 'geometric' (absorbing kernels: counts k_i = L^{i/N}, DUS's
    levels) too; 'jys' (or 'jys-reference', 'beta': any label `python -m jys` gives) reads the file that
    `python -m jys` wrote for this experiment, model, sampler and nfe; anything else is a path to a
    JSON schedule file, whose `times` fix the NFE. sampler=eb takes no grid: ('gamma<γ>', [1, eps], None, {}).
    """
    if cfg.sampler == "eb":
        return f"gamma{eb_gamma(cfg):g}", torch.tensor([1.0, float(cfg.eps)], dtype=torch.float64), None, {}
    spec = str(cfg.schedule)
    if spec == "geometric":
        process = experiment_of(cfg).process
        if process.kernel.mask is None:
            raise ValueError("schedule=geometric counts unmasked tokens: it needs an absorbing kernel")
        return spec, geometric(int(cfg.nfe), process, int(cfg.experiment.length)), int(cfg.nfe), {}
    if spec in BASELINES:
        return spec, BASELINES[spec](int(cfg.nfe), float(cfg.eps)), int(cfg.nfe), {}
    order = dus_order(cfg)  # DUS in a user's order: its schedules' labels carry the order's tag
    tag = "" if order is None else order_tag(order)
    if spec.startswith(("jys", "beta")) and not spec.endswith(".json"):
        path = artifact_path(cfg, "schedules", spec + tag, int(cfg.nfe), "json")  # the schedule searched for it
        if not path.is_file():
            given = "" if order is None else f" unmask.order={cfg.unmask.order}"
            raise FileNotFoundError(f"no JYS schedule at {path}; make it first with "
                                    f"`python -m jys experiment={cfg.experiment.name} model={cfg.model.name} "
                                    f"sampler={cfg.sampler} nfe={cfg.nfe}{given}`")
    else:
        path = Path(spec)
    data = load_schedule(path)
    if data.get("end") == "denoise" and (str(cfg.final_step) != data.get("final_step", "sample")
                                         or str(cfg.sampler) not in DENOISE_STEP):
        raise ValueError(f"schedule {str(path)!r} ends where its noise-removal call draws x_0 as its last step "
                         f"(jys.end=denoise, final_step={data.get('final_step', 'sample')}); sampling it with "
                         f"sampler={cfg.sampler}, final_step={cfg.final_step} leaves that step out: use {'/'.join(DENOISE_STEP)} with "
                         "final_step=sample, or a schedule made with jys.end=eps")
    if cfg.sampler == "dus":
        check_schedule_order(data, order, int(cfg.experiment.length), path)
    grid = torch.tensor(data["times"], dtype=torch.float64)
    # the samples' and metrics' names carry the order's tag after the NFE (artifact_path), as every schedule's do
    return data.get("label", path.stem).removesuffix(tag), grid, len(grid) - 1, data


def check_schedule_order(data: dict, order: torch.Tensor | None, length: int, path) -> None:
    """A DUS schedule searched with J for one order of positions (its order_sha256; a file without it but with
    order 'dus' was searched for the dilated order) serves DUS in that order only; schedules of the uniform-position
    J (order 'random') serve any."""
    dilated = order_digest(dilated_order(length))
    have = data.get("order_sha256") or (dilated if data.get("order") == "dus" else None)
    want = dilated if order is None else order_digest(order)
    name = {dilated: "DUS's dilated order"}
    if have is not None and have != want:
        raise ValueError(f"{path} was searched for DUS in {name.get(have, f'the order {have[:8]}…')}, and this run "
                         f"reveals in {name.get(want, f'the order {want[:8]}…')} (unmask.order); search its schedule "
                         "with the same unmask.order")


def run_config(cfg: DictConfig, grid: torch.Tensor, schedule: dict | None = None) -> dict:
    """What fixes the samples in the config: all of it less what only changes speed or display, plus the grid (and
    for the θ-trapezoidal sampler the schedule file's θ of each step, where it gives them)."""
    keep = OmegaConf.to_container(cfg, resolve=True)
    for k in ("progress", "threads", "device", "overwrite", "runs_dir", "jys", "train", "metrics", "tokenizer"):
        keep.pop(k, None)
    if multi_jump(cfg) is None:
        keep.pop("multi_jump", None)  # only τ-leaping reads it
    unmask = keep.pop("unmask", {})  # each key read by one sampler only
    if cfg.sampler == "confidence":
        keep["unmask"] = {"confidence": unmask["confidence"]}
    remdm = keep.pop("remdm", {})
    if cfg.sampler == "remdm":
        keep["remdm"] = remdm
    if cfg.sampler == "klass":
        keep["unmask"] = {"klass": unmask["klass"]}
    order = dus_order(cfg)
    if order is not None:  # the permutation itself, not its file's name
        keep["unmask"] = {"order_sha256": order_digest(order)}
    if cfg.sampler == "eb":  # no grid: schedule, nfe and eps draw nothing
        keep["unmask"] = {"gamma": eb_gamma(cfg)}
        for k in ("schedule", "nfe", "final_step", "eps"):
            keep.pop(k, None)
    keep["model"].pop("chunk", None)
    keep["model"].pop("tokenizer", None)  # decodes samples for a metric; draws nothing
    for k in ("metrics", "models"):  # what is evaluated on the samples, and which models the experiment runs
        keep["experiment"].pop(k, None)
    if cfg.sampler != "eb":
        keep["grid"] = grid.tolist()
    thetas = step_thetas(cfg, schedule)
    if thetas is not None:
        keep["thetas"] = thetas
    return keep


def step_thetas(cfg: DictConfig, schedule: dict | None) -> list[float] | None:
    """The θ of each θ-trapezoidal step where the schedule file gives them (J's grids for that sampler:
    jys.rule=sampler), else None (θ = ½)."""
    if cfg.sampler != "trapezoidal" or not schedule or schedule.get("thetas") is None:
        return None
    return [float(v) for v in schedule["thetas"]]


def samples_key(cfg: DictConfig, grid: torch.Tensor, model, schedule: dict | None = None) -> dict:
    """The reuse key of a samples file: the config and grid, the model's identity (its weights' or its
    chain's hash), the data's identity (dataset files' or chain's hash), the random streams and FORMAT_VERSION."""
    return cache_key("samples", {**run_config(cfg, grid, schedule), "model_identity": model_identity(model),
                                 "data_identity": experiment_of(cfg).identity(), "streams": "per-batch"})[0]


def key_differences(stored: dict, now: dict, limit: int = 8) -> list[str]:
    """The settings where two cache keys differ, as 'dotted.path: stored A, now B' (values cut to 60 characters),
    at most `limit` of them and a count of the rest."""
    def flat(d, prefix=""):
        out = {}
        for k, v in d.items():
            if isinstance(v, dict) and v:
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = v
        return out

    a, b = flat(stored), flat(now)
    def short(v) -> str:
        text = json.dumps(v)
        return text if len(text) <= 60 else text[:57] + "..."

    diff = [f"{k}: stored {short(a.get(k, '(absent)'))}, now {short(b.get(k, '(absent)'))}"
            for k in sorted(set(a) | set(b)) if a.get(k, "(absent)") != b.get(k, "(absent)")]
    return diff[:limit] + ([f"... and {len(diff) - limit} more"] if len(diff) > limit else [])
