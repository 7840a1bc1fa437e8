"""Cost of the JYS search on the CountDown oracle (Euler), against the published algorithm's.

Published: one golden-section search per inserted point, up to 35 evaluations, 2 model calls per
evaluation (R1 and R2), 1024 data samples: (N − 1) · 35 · 2 · 1024 sample-forwards for NFE N.
Ours: R1 once per interval, levels evaluated together, 256 samples by default. Schedule quality is
checked by the Euler error of each schedule (2048 samples, same seed) against a schedule our search
makes with the published 1024 samples.
    python benchmarks/jys_cost.py [--nfe 16 64] [--samples 2048]
"""
import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


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
    print(f"{'nfe':>4}{'search':>22}{'model calls':>13}{'sample-fwd':>13}{'wall s':>9}{'vs published':>14}{'error':>9}")
    for nfe in args.nfe:
        published = (nfe - 1) * 35 * 2 * 1024
        print(f"{nfe:>4}{'published (bound)':>22}{(nfe - 1) * 35 * 2:>13}{published:>13,}{'':>9}{'1.0x':>14}{'':>9}")
        for m in [args.jys_samples] + ([args.reference_samples] if nfe == args.quality_nfe else []):
            base = [f"runs_dir={runs}/m{m}", "experiment=count", "model=oracle", "sampler=euler", f"nfe={nfe}"]
            start = time.time()
            run("jys", *base, f"jys.num_samples={m}")
            wall = time.time() - start
            rec = json.loads(next(Path(f"{runs}/m{m}").rglob(f"euler-jys-nfe{nfe}.json")).read_text())
            sched = next(Path(f"{runs}/m{m}").rglob(f"euler-jys-nfe{nfe}.json"))
            common = base + [f"schedule={sched}", f"num_samples={args.samples}", "batch_size=512", "seed=0"]
            run("samplers", *common)
            err = json.loads(run("metrics", *common))["metrics"]["countdown_error"]
            ratio = published / rec["sample_forwards"]
            print(f"{nfe:>4}{f'ours, {m} samples':>22}{rec['model_calls']:>13}{rec['sample_forwards']:>13,}"
                  f"{wall:>9.1f}{f'{ratio:.1f}x fewer':>14}{err:>9.4f}")


if __name__ == "__main__":
    main()
