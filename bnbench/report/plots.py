"""The paper's figures, rebuilt from records (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from bnbench.report.drift import as_array, probe_steps, shift_over_time, typical_unit  # noqa: E402
from bnbench.results.store import write_atomic  # noqa: E402

COLORS = plt.rcParams["axes.prop_cycle"].by_key()["color"]


def cell_title(keys: list[str], cell: tuple) -> str:
    return ", ".join(f"{k}={v}" for k, v in zip(keys, cell)) or "all runs"


def _save(fig, path: Path) -> Path:
    """The figure as a PNG, written atomically (bnbench.results.store.write_atomic)."""
    fig.tight_layout()
    buf = io.BytesIO()
    try:
        fig.savefig(buf, dpi=120, format="png")
    finally:
        plt.close(fig)
    return write_atomic(path, buf.getvalue())


def accuracy_curves(cells: dict, keys: list[str], path: Path, title: str) -> Path:
    """Fig. 1(a) / Fig. 2: held-out accuracy vs training steps; mean over seeds, band = min..max."""
    ncols = min(len(cells), 3)
    nrows = -(-len(cells) // ncols)
    # more variants than the default cycle has colours (the modifications study has 17): 20
    # colours, and the legend beside the axes rather than over the curves
    many = max(len(bv) for bv in cells.values()) > len(COLORS)
    palette = plt.get_cmap("tab20").colors if many else COLORS
    fig, axes = plt.subplots(nrows, ncols, figsize=(6 * ncols + 3 * many, 4.2 * nrows), squeeze=False)
    for ax in axes.flat[len(cells):]:
        ax.axis("off")
    for ax, (cell, by_variant) in zip(axes.flat, cells.items()):
        for i, (name, summary) in enumerate(by_variant.items()):
            color = palette[i % len(palette)]
            recs = [r.record for r in summary.rows if r.record["curves"]["step"]]
            if not recs:
                continue
            lengths = {len(r["curves"]["step"]) for r in recs}
            if len(lengths) == 1:  # mean over seeds, band = min..max
                steps = np.asarray(recs[0]["curves"]["step"])
                acc = np.asarray([r["curves"]["acc"] for r in recs], dtype=float)
                ax.plot(steps, acc.mean(0), color=color, label=f"{name} (n={len(recs)})")
                if len(recs) > 1:
                    ax.fill_between(steps, acc.min(0), acc.max(0), color=color, alpha=0.2, lw=0)
            else:  # runs of different lengths (a divergence): one thin line each
                for k, r in enumerate(recs):
                    ax.plot(r["curves"]["step"], r["curves"]["acc"], color=color, lw=0.8,
                            label=f"{name} (n={len(recs)})" if k == 0 else None)
            for r in recs:  # mark where a run diverged
                if r["status"] == "diverged":
                    ax.plot(r["curves"]["step"][-1], r["curves"]["acc"][-1], "x", color=color, ms=8)
        ax.set_title(cell_title(keys, cell))
        ax.set_xlabel("training steps")
        ax.set_ylabel("held-out accuracy")
        ax.grid(alpha=0.3)
        if many:
            ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7)
        else:
            ax.legend(loc="lower right", fontsize=8)
    fig.suptitle(title)
    return _save(fig, path)


def sigmoid_inputs(cells: dict, keys: list[str], path: Path, variants: list[str]) -> Path | None:
    """Fig. 1(b, c), one row per grid cell: for each variant, the 15th/50th/85th percentiles of
    one typical last-hidden-layer sigmoid input over training (first seed); last column, over
    all units, how far the median has moved from its first value, in units of the initial
    spread (median over units, band = 25th..75th), the variants overlaid."""
    rows = [(cell, [(v, bv[v]) for v in variants if v in bv and bv[v].rows
                    and bv[v].rows[0].record["curves"].get("probe")]) for cell, bv in cells.items()]
    rows = [(cell, vs) for cell, vs in rows if vs]
    if not rows:
        return None
    ncols = max(len(vs) for _, vs in rows) + 1
    fig, axes = plt.subplots(len(rows), ncols, figsize=(4.2 * ncols, 3.4 * len(rows)), squeeze=False)
    for i, (cell, vs) in enumerate(rows):
        summary_ax = axes[i, -1]
        for j, (name, summary) in enumerate(vs):
            rec = summary.rows[0].record
            p = as_array(rec["curves"]["probe"])
            steps = np.asarray(probe_steps(rec["curves"]))
            u = typical_unit(p)
            ax = axes[i, j]
            for k, (q, style) in enumerate(zip(rec["curves"]["probe_quantiles"], (":", "-", "--"))):
                ax.plot(steps, p[:, k, u], style, color="k", lw=1.2, label=f"{q * 100:.0f}th percentile")
            ax.set_title(f"{name}, {cell_title(keys, cell)}: unit {u} (seed {rec['seed']})", fontsize=9)
            ax.set_xlabel("training steps")
            ax.set_ylabel("input to sigmoid")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
            shift = shift_over_time(p)
            color = COLORS[j % len(COLORS)]
            summary_ax.plot(steps, np.median(shift, 1), color=color, label=name)
            summary_ax.fill_between(steps, np.percentile(shift, 25, 1), np.percentile(shift, 75, 1),
                                    color=color, alpha=0.25, lw=0)
        for ax in axes[i, len(vs):-1]:
            ax.axis("off")
        summary_ax.set_title(f"all units, {cell_title(keys, cell)}", fontsize=9)
        summary_ax.set_xlabel("training steps")
        summary_ax.set_ylabel("|median - first median|\n/ first 15th-85th spread")
        summary_ax.grid(alpha=0.3)
        summary_ax.legend(fontsize=8)
    return _save(fig, path)


def by_norm_batch(cells: dict, keys: list[str], path: Path, reference: str | None) -> Path | None:
    """Best accuracy and steps to the reference's best against the number of examples BN
    normalizes over (record `norm_batch`), one point per run, the mean over seeds joined;
    one-process runs (ghost batches, the whole batch) and multi-process runs (DDP) marked apart.
    None when the runs with BN all normalize over the same batch."""
    if len({r.record.get("norm_batch") for bv in cells.values() for s in bv.values() for r in s.rows} - {None}) < 2:
        return None
    fig, axes = plt.subplots(len(cells), 2, figsize=(11, 4 * len(cells)), squeeze=False)
    for (cell, by_variant), (acc_ax, steps_ax) in zip(cells.items(), axes):
        for devices_multi, marker, label in ((False, "o", "1 process"), (True, "s", "several processes (DDP)")):
            points = {}  # norm batch -> (best accs, steps)
            for summary in by_variant.values():
                for row in summary.rows:
                    r = row.record
                    if r.get("norm_batch") is None or (r.get("devices", 1) > 1) != devices_multi:
                        continue
                    accs, steps = points.setdefault(r["norm_batch"], ([], []))
                    accs.append(r["best_acc"])
                    steps.append(row.steps)
            if not points:
                continue
            xs = sorted(points)
            color = COLORS[int(devices_multi)]
            shift = 1.06 if devices_multi else 1.0  # side by side where both exist
            for x in xs:
                accs, steps = points[x]
                acc_ax.plot([x * shift] * len(accs), [a for a in accs], marker, color=color, alpha=0.35, ms=5)
                got = [s for s in steps if s is not None]
                steps_ax.plot([x * shift] * len(got), got, marker, color=color, alpha=0.35, ms=5)
            acc_ax.plot([x * shift for x in xs], [np.mean([a for a in points[x][0] if a is not None]) for x in xs],
                        marker + "-", color=color, label=label)
            med = [(x, np.median([s for s in points[x][1] if s is not None])) for x in xs
                   if any(s is not None for s in points[x][1])]
            if med:
                steps_ax.plot([x * shift for x, _ in med], [m for _, m in med], marker + "-", color=color, label=label)
        for ax, ylabel in ((acc_ax, "best held-out accuracy"),
                           (steps_ax, f"steps to `{reference}`'s best\n(runs that never reach it: not drawn)")):
            ax.set_xscale("log", base=2)
            ax.set_xlabel("examples per BN batch (normalization batch)")
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
            ax.set_title(cell_title(keys, cell), fontsize=9)
    fig.suptitle("BN statistics over how many examples: mean over seeds (line), each run (dots)")
    return _save(fig, path)


def speedup_vs_target(cells: dict, keys: list[str], path: Path, reference: str | None) -> Path | None:
    """The speed-up against the target, one panel per grid cell: for each variant, `reference`'s
    steps / the variant's (paired by seed, geometric mean, bnbench.report.summary.paired_speedup)
    to targets a fraction of the way from chance to the reference's end accuracy, drawn at the
    mean target over seeds; bars: the 95% interval (the range with fewer than 3 seeds), an open
    marker where runs never reached a target and only bounds are known. None without a
    reference or another variant."""
    from bnbench.report.summary import FRACTIONS, mean_threshold, speedup_curve

    panels = []
    for cell, by_variant in cells.items():
        ref = by_variant.get(reference)
        others = [(n, s) for n, s in by_variant.items() if n != reference and s.rows]
        if ref is not None and ref.rows and others:
            panels.append((cell, ref, others))
    if not panels:
        return None
    ncols = min(len(panels), 3)
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(6 * ncols, 4.2 * nrows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (cell, ref, others) in zip(axes.flat, panels):
        xs = [mean_threshold(ref, f) for f in FRACTIONS]
        for i, (name, summary) in enumerate(others):
            color = COLORS[i % len(COLORS)]
            dx = (i - (len(others) - 1) / 2) * 0.15  # side by side
            pts = [(x * 100 + dx, sp.interval) for x, sp in zip(xs, speedup_curve(summary, ref).values())
                   if x is not None and sp.interval is not None]
            if not pts:
                continue
            known = [(x, iv.point) for x, iv in pts if iv.point is not None]
            if known:
                ax.plot(*zip(*known), "o-", color=color, label=name, ms=4)
            for x, iv in pts:
                lo, hi = max(iv.low, 1e-3), min(iv.high, 1e3)  # 0 and infinity: beyond the axes' ends
                ax.plot([x, x], [lo, hi], color=color, lw=1.2, alpha=0.7)
                if iv.point is None:
                    ax.plot(x, hi if iv.high < 1e3 else lo, "o", mfc="none", color=color, ms=5)
        ax.axhline(1.0, color="k", lw=0.8, ls=":")
        ax.set_yscale("log")
        ax.set_ylim(0.1, 100)  # 0x..infinity bounds run off the axes
        ax.set_title(cell_title(keys, cell))
        ax.set_xlabel(f"target accuracy (%; mean over seeds; rightmost: `{reference}`'s end accuracy)")
        ax.set_ylabel(f"speed-up over `{reference}`\n(its steps / the variant's)")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.suptitle("Speed-up against the target: geometric mean over seeds, 95% interval")
    return _save(fig, path)
