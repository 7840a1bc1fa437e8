"""The shapes of the JYS schedules in the oracle tables: t_i against i/N, one panel per experiment.

    python scripts/oracle_schedules_plot.py [--nfe 16] [--out docs/oracle_schedules.png]

Reads runs/<experiment>/oracle/table-<sampler>.json (scripts/jys_oracle_table.py) and draws the JYS grid
beside uniform, cosine and the best power grid of that NFE.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from common.io import save_figure

ROOT = Path(__file__).resolve().parents[1]

TABLES = [("count", "euler"), ("count_uniform", "euler"), ("count_uniform_const", "euler"),
          ("chain_gauss", "tau_leaping")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nfe", type=int, default=16)
    p.add_argument("--runs", default=str(ROOT / "runs"))
    p.add_argument("--out", default=str(ROOT / "docs" / "oracle_schedules.png"))
    a = p.parse_args()
    found = [(e, s, Path(a.runs) / e / "oracle" / f"table-{s}.json") for e, s in TABLES]
    found = [(e, s, json.loads(f.read_text())) for e, s, f in found if f.is_file()]
    if not found:
        sys.exit(f"no oracle tables under {a.runs}: run scripts/jys_oracle_table.py first")
    fig, axes = plt.subplots(1, len(found), figsize=(4.2 * len(found), 3.8), squeeze=False)
    for ax, (exp, sampler, table) in zip(axes[0], found):
        cells = table["cells"]
        powers = {k: v for k, v in cells.items() if k.startswith("power") and k.endswith(f"@{a.nfe}")}
        if f"jys@{a.nfe}" not in cells or not powers:
            continue
        best = min(powers, key=lambda k: powers[k]["value"])
        for name, style, color in (("uniform", ".-", "tab:green"), ("cosine", ".-", "tab:blue"),
                                   (best.split("@")[0], ".--", "black"), ("jys", "o-", "tab:orange")):
            times = cells[f"{name}@{a.nfe}"]["times"]
            n = len(times) - 1
            label = f"{name} ({cells[f'{name}@{a.nfe}']['value']:.4g})"
            ax.plot([i / n for i in range(n + 1)], times, style, color=color, label=label, markersize=3)
        ax.set_title(f"{exp}, {sampler}, NFE {a.nfe}", fontsize=9)
        ax.set_xlabel("step i / N")
        ax.set_ylabel("t_i")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, title=table["settings"]["metric"], title_fontsize=7)
    save_figure(fig, a.out, dpi=110)
    print(f"-> {a.out}")


if __name__ == "__main__":
    main()
