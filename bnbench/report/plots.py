"""The paper's figures, rebuilt from records (matplotlib, Agg backend, PNG)."""

from __future__ import annotations

import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
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


ZOOM_WITHIN = 0.10  # the zoomed panel shows the variants whose end accuracy is this close to the best


def _curves(summary) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray | None, list]]:
    """What the accuracy panels draw for one variant: ("mean", steps, mean over seeds, the
    min..max band, runs) when its runs share their evaluation steps, else one ("run", steps,
    accuracies, None, [run]) per run (runs of different lengths: a divergence)."""
    recs = [r.record for r in summary.rows if r.record["curves"]["step"]]
    if not recs:
        return []
    if len({len(r["curves"]["step"]) for r in recs}) == 1:
        acc = np.asarray([r["curves"]["acc"] for r in recs], dtype=float)
        band = np.stack([acc.min(0), acc.max(0)]) if len(recs) > 1 else None
        return [("mean", np.asarray(recs[0]["curves"]["step"]), acc.mean(0), band, recs)]
    return [("run", np.asarray(r["curves"]["step"]), np.asarray(r["curves"]["acc"], dtype=float), None, [r])
            for r in recs]


def _zoom_window(lines: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, float, float] | None:
    """(first step, low, high) of the panel zoomed on the top accuracies: from the best
    accuracy down to the lowest end level (mean of the last 5 points) among the curves ending
    within ZOOM_WITHIN of it (at least 1 point of accuracy), from the first step any curve is
    inside; None without finite accuracies."""
    finite = [(x, y) for x, y in lines if np.isfinite(y).any()]
    if not finite:
        return None
    top = max(float(np.nanmax(y)) for _, y in finite)
    ends = [float(np.nanmean(y[-5:])) for _, y in finite if np.isfinite(y[-5:]).any()]
    near = [e for e in ends if e >= top - ZOOM_WITHIN] or [top]
    low = min(min(near), top - 0.01)
    pad = (top - low) * 0.1
    inside = [x[np.argmax(y >= low)] for x, y in finite if (y >= low).any()]
    return float(min(inside)), low - pad, top + pad


def accuracy_curves(cells: dict, keys: list[str], path: Path, title: str) -> Path:
    """Fig. 1(a) / Fig. 2: validation accuracy vs training steps, per grid cell a row: a panel and beside
    it the same zoomed on the top accuracies; mean over seeds (line), min..max over seeds (band),
    one thin line per run where runs differ in length (a divergence), x where a run diverged."""
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    # more variants than the default cycle has colours (the modifications study has 17): 20
    # colours, and the legend beside the axes rather than over the curves
    many = max(len(bv) for bv in cells.values()) > len(COLORS)
    palette = plt.get_cmap("tab20").colors if many else COLORS
    fig, axes = plt.subplots(len(cells), 2, figsize=(12 + 3 * many, 4.2 * len(cells)), squeeze=False)
    for (full, zoom), (cell, by_variant) in zip(axes, cells.items()):
        lines, banded, diverged = [], False, False
        for i, (name, summary) in enumerate(by_variant.items()):
            color = palette[i % len(palette)]
            drawn = _curves(summary)
            for k, (kind, steps, acc, band, recs) in enumerate(drawn):
                label = f"{name} (n={sum(len(d[4]) for d in drawn)})" if k == 0 else None
                for ax in (full, zoom):
                    ax.plot(steps, acc, color=color, lw=1.5 if kind == "mean" else 0.8, label=label)
                    if band is not None:
                        ax.fill_between(steps, band[0], band[1], color=color, alpha=0.2, lw=0)
                banded |= band is not None
                lines.append((steps, acc))
                for r in recs:  # mark where a run diverged
                    if r["status"] == "diverged":
                        diverged = True
                        for ax in (full, zoom):
                            ax.plot(r["curves"]["step"][-1], r["curves"]["acc"][-1], "x", color=color, ms=8)
        window = _zoom_window(lines)
        if window:
            x0, y0, y1 = window
            zoom.set_xlim(left=x0)
            zoom.set_ylim(y0, y1)
        extra = ([Patch(color="0.5", alpha=0.3, label="band: min–max over seeds")] if banded else []) + (
            [Line2D([], [], ls="", marker="x", color="0.3", label="x: the run diverged")] if diverged else [])
        full.set_title(cell_title(keys, cell))
        zoom.set_title(f"{cell_title(keys, cell)}: zoomed on the top accuracies\n"
                       f"(the curves ending within {ZOOM_WITHIN * 100:.0f} points of the best)", fontsize=9)
        for ax in (full, zoom):
            ax.set_xlabel("training steps")
            ax.set_ylabel("validation accuracy")
            ax.grid(alpha=0.3)
        handles = zoom.get_legend_handles_labels()[0] + extra
        if many:
            zoom.legend(handles=handles, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=7)
        else:
            full.legend(handles=handles, loc="lower right", fontsize=8)
    fig.suptitle(f"{title}: mean over seeds (line), min–max over seeds (band)")
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
        for ax, ylabel in ((acc_ax, "best validation accuracy"),
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
        drawn = False
        for i, (name, summary) in enumerate(others):
            color = COLORS[i % len(COLORS)]
            dx = (i - (len(others) - 1) / 2) * 0.15  # side by side
            pts = [(x * 100 + dx, sp.interval) for x, sp in zip(xs, speedup_curve(summary, ref).values())
                   if x is not None and sp.interval is not None]
            if not pts:
                continue
            drawn = True
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
        if drawn:
            ax.legend(fontsize=8)
        else:  # e.g. a reference that stays at chance sets no target (summary.target_of)
            ax.text(0.5, 0.5, f"no target: `{reference}` sets none in any seed", transform=ax.transAxes,
                    ha="center", va="center", fontsize=9, color="0.4")
    fig.suptitle("Speed-up against the target: geometric mean over seeds, 95% interval")
    return _save(fig, path)


def _group(a: str, b: str) -> str:
    """How ablations/modifications.yaml names its variants: add_* (one modification added to
    the base), loo_* (one left out of the full set)."""
    names = (a, b)
    if any(n.startswith("add_") for n in names):
        return "add-one-in"
    if any(n.startswith("loo_") for n in names):
        return "leave-one-out"
    return "other contrasts"


def forest(cells: dict, keys: list[str], path: Path, contrasts: list, reference: str | None) -> Path | None:
    """Each contrast's effect with its interval, one row per pair [a, b] of the study's
    `contrasts`, grouped add-one-in / leave-one-out (by the variants' names): the speed-up (b's
    steps / a's to `reference`'s end accuracy, log scale; bnbench.report.summary.contrast) and
    the end-accuracy difference (a minus b, points), each the mean over seeds with its 95%
    interval (the range with fewer than 3 seeds). Open marker: only bounds are known; an arrow:
    the interval runs on past the axis (a run never reached the target). None without contrasts
    or a reference."""
    from bnbench.report.summary import contrast

    if not contrasts or not reference:
        return None
    order = ["add-one-in", "leave-one-out", "other contrasts"]
    pairs = sorted(contrasts, key=lambda p: order.index(_group(*p)))  # stable: the study's order within a group
    n = len(pairs)
    fig, axes = plt.subplots(len(cells), 2, figsize=(13, 0.42 * n * len(cells) + 1.6 * len(cells)), squeeze=False)
    for (sp_ax, acc_ax), (cell, by_variant) in zip(axes, cells.items()):
        results = [contrast(by_variant[a], by_variant[b]) for a, b in pairs]
        ys = np.arange(n)[::-1]
        known = [v for c in results if c.speedup.interval for v in (c.speedup.interval.low, c.speedup.interval.high,
                 c.speedup.interval.point) if v is not None and 0 < v < math.inf]
        lo, hi = (min(known + [1.0]) / 1.5, max(known + [1.0]) * 1.5)
        for y, c, (a, b) in zip(ys, results, pairs):
            color = COLORS[order.index(_group(a, b))]
            iv = c.speedup.interval
            if iv is not None:
                left, right = max(iv.low, lo), min(iv.high, hi)
                sp_ax.plot([left, right], [y, y], color=color, lw=2)
                if iv.low < lo:
                    sp_ax.plot(lo, y, "<", color=color, ms=7)
                if iv.high > hi:
                    sp_ax.plot(hi, y, ">", color=color, ms=7)
                if iv.point is not None:
                    sp_ax.plot(iv.point, y, "o", color=color, ms=6)
                else:
                    sp_ax.plot(math.sqrt(left * right), y, "o", mfc="none", color=color, ms=6)
            d = c.end_diff
            if d is not None:
                acc_ax.plot([d.low * 100, d.high * 100], [y, y], color=color, lw=2)
                acc_ax.plot(d.point * 100, y, "s", color=color, ms=6)
            else:
                acc_ax.text(0, y, "n/a", ha="center", va="center", fontsize=8, color="0.4")
        labels = [f"{a} vs {b} (n={len(c.speedup.seeds)})" for c, (a, b) in zip(results, pairs)]
        sp_ax.axvline(1.0, color="k", lw=0.8, ls=":")
        acc_ax.axvline(0.0, color="k", lw=0.8, ls=":")
        sp_ax.set_xscale("log")
        sp_ax.set_xlim(lo / 1.1, hi * 1.1)
        sp_ax.xaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1, 2, 5)))
        sp_ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}x"))
        sp_ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        for ax in (sp_ax, acc_ax):
            ax.set_yticks(ys)
            ax.set_ylim(-0.7, n - 0.3)
            ax.grid(alpha=0.3, axis="x", which="both")
        sp_ax.set_yticklabels(labels, fontsize=8)
        acc_ax.set_yticklabels([])
        for group in order:  # a rule between groups, the group's name at its top
            rows = [y for y, (a, b) in zip(ys, pairs) if _group(a, b) == group]
            if rows:
                sp_ax.text(0.01, max(rows) + 0.38, group, transform=sp_ax.get_yaxis_transform(), fontsize=8,
                           color=COLORS[order.index(group)], weight="bold", va="center")
                if min(rows) > 0:
                    for ax in (sp_ax, acc_ax):
                        ax.axhline(min(rows) - 0.5, color="0.6", lw=0.8)
        title = cell_title(keys, cell)
        sp_ax.set_title(f"{title}: speed-up, the second's steps / the first's\nto `{reference}`'s end accuracy "
                        "(mean over seeds, 95% interval; > 1: the first is faster)", fontsize=9)
        acc_ax.set_title(f"{title}: end-accuracy difference, first minus second\n(points; mean over seeds, "
                         "95% interval)", fontsize=9)
        sp_ax.set_xlabel("speed-up (log scale)")
        acc_ax.set_xlabel("end-accuracy difference (points)")
    fig.suptitle("Each contrast's effect (study `contrasts`): add-one-in and leave-one-out, with intervals "
                 "(the range over seeds with fewer than 3)")
    return _save(fig, path)
