"""What each experiment's table shows: its metrics (name, label, digits, log axis), the models it runs, the
uniform-only quality column, the music reference cell, the identity fields one table must share, and the
command that makes its runs. An oracle twin (`<experiment>_twin`) is its experiment's table on the oracle."""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Metric:
    key: str  # the key in a record's `metrics`; `<key>_se`, where present, is its standard error
    label: str
    digits: int
    log: bool = False  # a log-scaled axis in the figures
    extra: str | None = None  # a second metric shown in brackets beside it (text: the token entropy)
    # Whether seeds' standard errors are of independent estimates: False where every seed judges the same held-out
    # items against one reference (music), so that the seeds share part of their error and no ± is combined.
    independent_seeds: bool = True


@dataclass(frozen=True)
class Spec:
    experiment: str
    script: str  # the command that makes the runs
    models: tuple[str, ...]
    metrics: tuple[Metric, ...]
    unit: str = "sequence"  # NFE = model calls per <unit>
    quality_nfe: int | None = None  # a uniform-grid cell at many calls: the model's quality, not a comparison
    reference: tuple[int, int] | None = None  # (model calls, seed) of the uniform cell other samples are judged against
    identity: tuple[str, ...] = ("model_identity", "data_identity", "format_version", "num_samples")
    floor: str | None = None  # the label of runs/<experiment>/floor.json (held-out data's value)


SCHEDULES = ("uniform", "cosine", "jys", "jys-hierarchy", "beta")  # jys-hierarchy: the published search; beta: a peer

SPECS = {
    "count": Spec("count", "bash scripts/count.sh", ("count-sedd", "oracle"),
                  (Metric("countdown_error", "CountDown error (fraction of broken transitions)", 4, log=True),),
                  identity=("model_identity", "data_identity", "format_version")),
    "digits": Spec("digits", "bash scripts/cifar.sh", ("digits-tauldr",),
                   (Metric("digits_fid", "digits-FID", 2, log=True),), unit="image", quality_nfe=256,
                   floor="held-out images"),
    "folk": Spec("folk", "bash scripts/piano.sh", ("folk-tauldr",),
                 (Metric("hellinger_ref", "Hellinger distance to NFE-512 samples", 4, independent_seeds=False),
                  Metric("hellinger_true", "Hellinger distance to the true continuation", 4, independent_seeds=False)),
                 reference=(512, 100), floor="another tune"),
    "text": Spec("text", "bash scripts/text.sh", ("text-sedd",),
                 (Metric("gen_ppl", "generative perplexity", 1, log=True, extra="entropy"),), quality_nfe=256,
                 identity=("model_identity", "data_identity", "format_version", "judge", "num_samples"),
                 floor="held-out text"),
}
# The oracle experiments on Markov chains: the chain NLL and the bigram divergence of the samples against the chain.
CHAIN = Spec("chain", "bash scripts/solvers.sh", ("oracle",),
             (Metric("chain_nll", "NLL per token under the chain", 4),
              Metric("bigram_tv", "TV of the bigram frequencies against the chain's", 4)))
for name in ("chain", "chain_gauss", "count_uniform", "count_uniform_const"):
    SPECS[name] = replace(CHAIN, experiment=name)
SPECS["cifar10"] = replace(SPECS["digits"], experiment="cifar10", models=("tauldr-cifar",),
                          metrics=(Metric("fid", "FID", 2, log=True),), floor=None)
# The published checkpoints' other experiments share their embedded twins' tables.
ALIASES = {"piano": "folk", "text_gpt2": "text"}
# Oracle twins judged as the chains are (their configs' metrics): a judge LM or a digit classifier scores real
# samples, the twin's exact law is the chain. The folk twin keeps the music protocol.
CHAIN_TWINS = ("text", "digits")


def spec_for(experiment: str, models: tuple[str, ...] | None = None, quality_nfe: int | None = None) -> Spec:
    """The spec of an experiment, of a published one's embedded twin, or of an oracle twin (`folk_twin`: folk's
    table on the oracle); `<experiment>+<tag>` names another committed table of the same experiment (e.g.
    count+solvers). An unknown name is an error listing the known ones."""
    experiment = experiment.split("+")[0]
    base = experiment.removesuffix("_twin")
    base = ALIASES.get(base, base)
    if base not in SPECS:
        known = sorted(SPECS) + sorted(ALIASES) + [f"{k}_twin" for k in sorted(SPECS)]
        raise ValueError(f"no results spec for experiment {experiment!r}; known: {', '.join(known)}")
    spec = replace(SPECS[base], experiment=experiment)
    if experiment.endswith("_twin"):
        spec = replace(spec, models=("oracle",))
        if base in CHAIN_TWINS:  # the chain's metrics and identity; the unit (image, sequence) stays the experiment's
            spec = replace(spec, metrics=CHAIN.metrics, identity=CHAIN.identity, quality_nfe=None, floor=None)
    if quality_nfe:
        spec = replace(spec, quality_nfe=quality_nfe)
    return replace(spec, models=tuple(models)) if models else spec
