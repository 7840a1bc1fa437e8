"""Cost of the JYS search on the CountDown oracle (Euler), against the published algorithm's.

Published: one golden-section search per inserted point, up to 35 evaluations, 2 model calls per
evaluation (R1 and R2), 1024 data samples: (N − 1) · 35 · 2 · 1024 sample-forwards for NFE N.
Ours: the hierarchy reads R1 once per interval and evaluates a level's searches together, 256 samples by default;
schedule quality is checked by the Euler error of each schedule (2048 samples, same seed) against a schedule it
makes with the published 1024 samples. The default search (J's lattice optimum) reads the model once per lattice
point and batch of its 128 sequences, shared by every NFE of the lattice.
    python benchmarks/jys_cost.py [--nfe 16 64] [--samples 2048]
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from results.bench import BenchTable

ROOT = Path(__file__).resolve().parents[1]
LATTICE_SAMPLES = 128  # configs/config.yaml jys.lattice_samples


def run(*args):
    out = subprocess.run([sys.executable, "-m", *args, "progress=false"], cwd=ROOT, check=True,
                         capture_output=True, text=True)
    return out.stdout


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--nfe", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--samples", type=int, default=2048)
    ap.add_argument("--jys-samples", type=int, default=256)
    ap.add_argument("--reference-samples", type=int, default=1024,
                    help="KLUB samples of the quality reference, searched at --quality-nfe only")
    ap.add_argument("--quality-nfe", type=int, default=16)
    args = ap.parse_args()
    runs = tempfile.mkdtemp(prefix="jys_cost_")
    table = BenchTable("jys_cost", ["steps", "search", "model calls", "sample-forwards", "wall s", "vs published",
                                    "Euler error"],
                       f"CountDown oracle, Euler, `nfe` grid steps; the hierarchy (jys.search=hierarchy) with M KLUB "
                       f"samples, and the default lattice search (J's optimum, {LATTICE_SAMPLES} lattice sequences); "
                       f"error of {args.samples} samples, seed 0.")
    for nfe in args.nfe:
        published = (nfe - 1) * 35 * 2 * 1024
        table.row(nfe, "published (bound)", (nfe - 1) * 35 * 2, f"{published:,}", "", "1×", "")
        variants = [(f"hierarchy, {m} KLUB samples", "jys-hierarchy", ["jys.search=hierarchy", f"jys.num_samples={m}"])
                    for m in [args.jys_samples] + ([args.reference_samples] if nfe == args.quality_nfe else [])]
        variants.append(("lattice DP (default)", "jys", []))
        for i, (name, label, overrides) in enumerate(variants):
            base = [f"runs_dir={runs}/n{nfe}-v{i}", "experiment=count", "model=oracle", "sampler=euler", f"nfe={nfe}"]
            start = time.time()
            run("jys", *base, *overrides)
            wall = time.time() - start
            sched = next(Path(f"{runs}/n{nfe}-v{i}").rglob(f"euler-{label}-nfe{nfe}.json"))
            rec = json.loads(sched.read_text())
            common = base + [f"schedule={sched}", f"num_samples={args.samples}", "batch_size=512", "seed=0"]
            run("samplers", *common)
            err = json.loads(run("metrics", *common))["metrics"]["countdown_error"]
            ratio = published / rec["sample_forwards"]
            table.row(nfe, name, rec["model_calls"], f"{rec['sample_forwards']:,}", f"{wall:.1f}",
                      f"{ratio:.1f}× fewer", f"{err:.4f}")
    table.save()


if __name__ == "__main__":
    main()
