"""`bnbench report`: a launch directory's records -> report.md, report.html, summary.json, the
tables as CSV and LaTeX, runs.csv and PNG figures.

A pure function of the records and the launch's study.json: rerunning it gives the same
files. Nothing here is edited by hand. The report is a list of sections, one function each
(`_header`, `_overview`, `_results`, ...), each returning blocks (bnbench/report/document.py);
every output is a rendering of those blocks, so they say the same thing.
"""

from __future__ import annotations

import csv
import io
import math
import re
from dataclasses import dataclass
from pathlib import Path

from bnbench.errors import ConfigError
from bnbench.overrides import key_of
from bnbench.report import adhoc, document, html, plots, summary_json, tables
from bnbench.report.claims import fmt_x, judge
from bnbench.report.clocks import clock_note
from bnbench.report.document import Block, Bullets, Figures, Heading, Para, Quote, Table, markdown, md_lines
from bnbench.report.stats import MIN_SEEDS
from bnbench.report.summary import (
    CHANCE_MARGIN, FRACTIONS, VariantSummary, cell_of, contrast, drift_means, end_acc, eval_interval,
    last_quarter_gain, lookup, mean_sd, mean_threshold, median_steps, paired_speedup, summarize,
)
from bnbench.results.archive import RECORDS, compact, has_archive, read_archive, write_archive
from bnbench.results.record import Record
from bnbench.results.targets import SELECTION, WINDOW
from bnbench.results.store import STUDY, read_json, read_records, write_atomic
from bnbench.study.spec import parse_study


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.2f}"


def _mean_sd_pct(xs: list) -> str:
    ms = mean_sd(xs)
    if ms is None:
        return "n/a"
    return f"{ms[0] * 100:.2f}" + (f" ± {ms[1] * 100:.2f}" if len([x for x in xs if x is not None]) > 1 else "")


def _steps(s: VariantSummary) -> str:
    """Median steps to target over seeds, runs that never got there ranked last (so "> budget"
    when half or more never did), [range over runs that did], and how many did."""
    reaches = [r.reach for r in s.rows if r.reach is not None]
    if not reaches:
        return "–"
    med = median_steps(reaches)
    got = sorted(r.by for r in reaches if not r.censored)
    text = f"{med:,.0f}" if math.isfinite(med) else f"> {max(r.after for r in reaches if r.censored):,.0f}"
    if len(got) > 1:
        text += f" [{got[0]:,.0f}–{got[-1]:,.0f}]"
    return text + (f" ({len(got)}/{len(reaches)} reached)" if len(got) < len(reaches) else "")


def _x_interval(iv) -> str:
    """A speed-up and its interval, compact: "2.57x [2.07–3.34]"; bounds only when censored."""
    if iv is None:
        return "–"
    bounds = f"[{fmt_x(iv.low).rstrip('x')}–{fmt_x(iv.high).rstrip('x')}]"
    return (f"{iv.point:.2f}x " if iv.point is not None else "bounds ") + bounds


def _speedup(s: VariantSummary, ref: VariantSummary, fraction: float = 1.0) -> str:
    if s is ref:
        return "(reference)"
    return _x_interval(paired_speedup(s, ref, fraction).interval) if s.rows else "–"


def _seed_targets(rows) -> str:
    """Each seed's target; a seed whose reference ends at chance (summary.target_of) has none."""
    parts, at_chance = [], []
    for r in rows:
        level = end_acc(r.record)
        if r.target is not None:
            parts.append(_pct(r.target) + "%")
        elif level is not None:
            at_chance.append(f"s{r.seed} {_pct(level)}%")
        else:
            parts.append(f"none: s{r.seed} {r.record.status}")
    text = ", ".join(parts)
    if at_chance:
        text += ("; " if text else "") + (f"none where the reference ends within {CHANCE_MARGIN * 100:g} points "
                                          "of chance: " + ", ".join(at_chance))
    return text or "n/a"


def _target_text(ref: str, ref_summary: VariantSummary) -> str:
    """How the target and the steps to it are read (the speed-up table's caption)."""
    targets = _seed_targets(ref_summary.rows)
    every = sorted({e for r in ref_summary.rows if (e := eval_interval(r.record)) is not None})
    every_text = ", ".join(f"{e:,}" for e in every) or "n/a"
    return (f"Target: `{ref}`'s end accuracy, the mean of its last {WINDOW} evaluations of validation accuracy "
            f"(`curves.{SELECTION}`; fewer in shorter runs), per seed ({targets}). "
            f"Evaluations every {every_text} steps (`run.eval_every`). Steps to target: the first evaluation at which "
            f"a run's accuracy, averaged over {WINDOW} evaluations centred on it, reaches the target; a step count s "
            "means after the evaluation before s and by s. Median over seeds [range], runs that never got there "
            "ranked last (\"> budget\" when half or more never did). Speed-up: "
            f"`{ref}`'s steps / the variant's, paired by seed, geometric mean over seeds of the two intervals' "
            f"midpoints [95% bootstrap interval, also spanning each interval's ends; the range over seeds with fewer "
            f"than {MIN_SEEDS}]; a run that never got there counts as needing more than its budget (\"bounds\": only "
            "bounds are known). " + ACCURACIES)


# the results table's accuracy columns (also the caption where there is no reference)
ACCURACIES = ("Accuracies in %, mean ± sd over seeds: best (a run's best single evaluation) and final on the "
              f"validation set; last-quarter gain, in points: the end accuracy (mean of the last {WINDOW} "
              "evaluations) less the same a quarter of the run's steps earlier, near 0 on a plateau, positive "
              "while a run still climbs (completed runs); on the test set, never selected on, at the step of "
              "that best evaluation and at the end.")


@dataclass
class Report:
    """What every section reads: the study, its launch, its records and their summaries."""

    spec: object  # bnbench.study.spec.StudySpec
    meta: dict
    records: list[Record]
    cells: dict  # {cell: {variant: VariantSummary}} (bnbench.report.summary.summarize)
    keys: list[str]  # the grid's keys
    figures: list[Path]
    launch_dir: Path

    @property
    def ref(self) -> str | None:
        return self.spec.reference

    def table_name(self, kind: str, cell: tuple) -> str:
        """tables/<kind>[_<cell>]: the cell in the name where the grid has more than one."""
        if len(self.cells) < 2:
            return kind
        return kind + "_" + re.sub(r"[^A-Za-z0-9.,=+-]+", "_", plots.cell_title(self.keys, cell).replace(", ", ","))


# --------------------------------------------------------------------------- the sections


def _header(rep: Report) -> list[Block]:
    """Title, a warning when the runs came from uncommitted code, the description, and where
    the runs came from (command, runs, launch, launcher, code)."""
    spec, meta, records = rep.spec, rep.meta, rep.records
    env = records[0].env
    git = env.git
    sha = (git["sha"] or "unknown")[:10] + (" (uncommitted changes)" if git.get("dirty") else "")
    steps = sorted({r.max_steps for r in records})
    multirun = adhoc.is_multirun(meta)
    out: list[Block] = [Heading(1, f"Launch `{spec.name}/{meta['launch']}`" if multirun else f"Study `{spec.name}`")]
    dirty = sum(bool((r.env.git or {}).get("dirty")) for r in records)
    if dirty:
        out.append(Quote(f"**Made from uncommitted code**: {dirty} of {len(records)} runs ran in a checkout with "
                         "uncommitted changes to tracked files (`env.git.dirty` in their records): commit "
                         f"{(git['sha'] or 'unknown')[:10]} does not hold exactly the code that produced them."))
    if spec.description:
        out.append(Para(spec.description))
    out.append(Para("*Generated by `bnbench report` from the run records; do not edit by hand.*"))
    if multirun:
        command, launch = adhoc.command_text(meta), adhoc.launch_text(meta)
    else:
        command = f"`{study_command(spec.name, meta).strip()}`"
        launch = (f"`{meta['launch']}`, started {meta.get('started')}, finished "
                  f"{meta.get('finished') or _unfinished(meta, records)}; "
                  f"study wall time {_duration(meta.get('wall_s'))}{_resumed(meta)}")
    clocks = clock_note(records)
    out.append(Bullets([
        f"Command: {command}",
        f"Runs: {len(records)} ({len(spec.variants)} variants × {len(spec.cells())} grid cell(s) × seeds "
        f"{meta['seeds']}), {' / '.join(f'{s:,}' for s in steps)} steps each",
        f"Launch: {launch}",
        f"Launcher: {_launcher(meta)}",
        f"Code: commit {sha}; torch {env.packages['torch']}, Lightning {env.packages['pytorch-lightning']}, "
        f"on {env.device} ({env.device_name}, {env.torch_threads} torch thread(s) per run)",
    ] + ([f"Clocks: {clocks}"] if clocks else [])))
    return out


def _overview(rep: Report) -> list[Block]:
    """With more than one grid cell: best accuracy per cell and variant."""
    if len(rep.cells) < 2:
        return []
    variants, keys = rep.spec.variants, rep.keys
    rows = [[plots.cell_title(keys, cell).split("=", 1)[-1] if len(keys) == 1 else plots.cell_title(keys, cell),
             *[_mean_sd_pct(bv[v].field("best_acc")) if v in bv else "–" for v in variants]]
            for cell, bv in rep.cells.items()]
    return [Heading(2, "Overview"),
            Para("Best validation accuracy (%, mean ± sd over seeds) per grid cell and variant."),
            Table("overview", [", ".join(keys), *[f"`{v}`" for v in variants]], rows)]


def _results(rep: Report, cell: tuple, by_variant: dict) -> list[Block]:
    """The cell's heading, how the target is read, and each variant's runs, steps to target,
    speed-up and accuracies."""
    ref = rep.ref
    out: list[Block] = [Heading(2, f"Results: {plots.cell_title(rep.keys, cell)}" if rep.keys else "Results")]
    out.append(Para(_target_text(ref, by_variant[ref]) if ref else ACCURACIES))
    # Sec. 4.2.1 (6): show how often example pairs meet again, where the variants' orders differ
    rates = {name: {round(r, 4) for r in s.field("co_batch_rate") if r is not None} for name, s in by_variant.items()}
    show_rate = len(set().union(*rates.values())) > 1
    rows = []
    for name, s in by_variant.items():
        rows.append([f"`{name}`", s.n, _status(s), _steps(s) if ref else "–",
                     _speedup(s, by_variant[ref]) if ref else "–", _seconds(s.values("seconds")) if ref else "–",
                     _mean_sd_pct(s.field("best_acc")), _mean_sd_pct(s.field("final_acc")),
                     _mean_sd_pct([last_quarter_gain(r.record) for r in s.rows]),
                     _mean_sd_pct(s.field("test_acc_at_best")), _mean_sd_pct(s.field("final_test_acc"))]
                    + ([", ".join(f"{r:.3f}" for r in sorted(rates[name])) or "–"] if show_rate else []))
    out.append(Table(rep.table_name("results", cell),
                     ["variant", "runs", "status", "steps to target", "speed-up", "train time to target", "best acc",
                      "final acc", "last-quarter gain", "test acc at best", "final test acc"]
                     + (["pairs re-batched"] if show_rate else []),
                     rows))
    if show_rate:
        out.append(Para("Pairs re-batched (Sec. 4.2.1, modification 6): of the example pairs sharing a mini-batch "
                        "in one epoch, the fraction sharing one again in the next, under each variant's shuffling."))
    return out


def _speedup_curve(by_variant: dict, ref: str | None, name: str = "speedup_vs_target") -> list[Block]:
    """The speed-up against the target: at fractions of the way from chance to the target."""
    others = [v for v, s in by_variant.items() if v != ref and s.rows]
    if not ref or not others or not by_variant[ref].rows:
        return []
    levels = [mean_threshold(by_variant[ref], f) for f in FRACTIONS]
    headers = ["variant"] + [f"{f:.0%}" + (f" ({lv * 100:.1f}%)" if lv is not None else "")
                             for f, lv in zip(FRACTIONS, levels)]
    rows = [[f"`{v}`"] + [_speedup(by_variant[v], by_variant[ref], f) for f in FRACTIONS] for v in others]
    return [Para("Speed-up against the target (figure `speedup`): the same speed-up to lower targets, a fraction of "
                 "the way from chance to the target (mean target over seeds, %); 100% is the target above."),
            Table(name, headers, rows)]


def _norm_batches(by_variant: dict, name: str = "processes") -> list[Block]:
    """Where variants differ in how many processes they ran on or how many examples BN
    normalized over: those numbers per variant (records made before they were recorded: 1
    process, no batch). Variants without BN have no normalization batch and differ in nothing
    here: with and without BN alone is no reason for the table."""
    def one(s, key, default=None):
        values = sorted({r.record.get(key, default) for r in s.rows}, key=str)
        return ", ".join("–" if v is None else str(v) for v in values) or "–"

    ran = [s for s in by_variant.values() if s.rows]
    devices = {one(s, "devices", 1) for s in ran}
    norm_batches = {one(s, "norm_batch") for s in ran} - {"–"}
    if len(devices) < 2 and len(norm_batches) < 2:
        return []
    rows = [[f"`{v}`", one(s, "devices", 1), one(s, "launcher", "single"),
             ", ".join(sorted({str(lookup(r.record["config"], "norm.stats") or "device") for r in s.rows})),
             one(s, "norm_batch"), one(s, "batch_per_device"), one(s, "global_batch")]
            for v, s in by_variant.items() if s.rows]
    return [Para("Processes and batches: `norm.stats` says what BN normalizes over (device: each process's slice; "
                 "global: the whole global batch, synchronized; ghost: `norm.ghost_size` examples); the normalization "
                 "batch is that number of examples."),
            Table(name, ["variant", "processes", "launcher", "norm.stats", "normalization batch", "batch per device",
                         "global batch"], rows)]


def _drift(by_variant: dict, name: str = "sigmoid_inputs") -> list[Block]:
    """Fig. 1b, c as numbers: how far the last hidden layer's sigmoid inputs moved."""
    rows = [[f"`{v}`", f"{d['shift']:.3f}", f"{d['path']:.3f}" if d["path"] is not None else "n/a",
             f"{d['spread_ratio']:.2f}"] for v, s in by_variant.items() if (d := drift_means(s))]
    if not rows:
        return []
    return [Para("Sigmoid inputs of the last hidden layer (Fig. 1b, c), over the fixed probe batch, normalized over "
                 "it as in training: the median's shift from the first probe (before any update, in runs that have "
                 "one) to the last, and the length of its path (every movement counted), in units of the initial "
                 "15th–85th percentile spread; and the spread's final/initial ratio (median over units, mean over "
                 "seeds)."),
            Table(name, ["variant", "median shift", "median path", "spread ratio"], rows)]


def _contrasts(pairs: list, by_variant: dict, ref: str | None, name: str = "contrasts") -> list[Block]:
    """Each pair on the same seeds, with the verdicts' statistics: the first's speed-up over the
    second to the target (censored seeds bound it, never dropped) and the difference in end
    accuracy, each with its 95% interval (range under 3 seeds)."""
    if not pairs or not ref:
        return []
    rows = []
    for a, b in pairs:
        c = contrast(by_variant[a], by_variant[b])
        sp, iv = c.speedup, c.end_diff
        never = (f"; never reached: {len(sp.censored)} vs {len(sp.ref_censored)}"
                 if sp.censored or sp.ref_censored else "")
        rows.append([f"`{a}`", f"`{b}`", (_x_interval(sp.interval) if sp.seeds else "– (no runs yet)") + never,
                     "n/a" if iv is None else f"{iv.point * 100:+.2f} [{iv.low * 100:+.2f}–{iv.high * 100:+.2f}] "
                                              f"({iv.method}, {iv.n} seed{'s' if iv.n != 1 else ''})"])
    return [Heading(3, "Contrasts"),
            Para(f"Each pair on the same seeds: speed-up = the second's steps / the first's to `{ref}`'s end accuracy "
                 "(mean [95% interval], censored seeds as bounds); difference in end accuracy, first minus second "
                 "(points, mean [interval])."),
            Table(name, ["variant", "against", "speed-up", "end-acc difference"], rows)]


def _claims(claims: list[dict], by_variant: dict, ref: str | None, name: str = "claims") -> list[Block]:
    """Each claim of the study: what was seen, its effect with the interval, the paper's size
    beside it, and the verdict (bnbench/report/claims.py)."""
    if not claims:
        return []
    rows = []
    for c in claims:
        j = judge(c, by_variant, ref)
        rows.append([c.get("claim", ""), f"`{c.get('rule')}`", j.observed, j.effect, j.paper, f"**{j.verdict}**"])
    return [Heading(3, "The paper's claims, as observed"),
            Table(name, ["claim", "rule", "observed", "effect [95% interval]", "against the paper", "verdict"], rows),
            Para("Rules: `bnbench/report/claims.py`. Each claim is one number per seed (paired with the reference's "
                 "run of the same seed where it compares two variants), its mean over seeds with a 95% bootstrap "
                 f"interval (scipy.stats.bootstrap, BCa, fixed seed; the range over seeds with fewer than "
                 f"{MIN_SEEDS}). holds: the interval lies wholly on the claimed side of no effect (or of the rule's "
                 f"stated boundary); does not hold: wholly on the other side; inconclusive: neither; indicative: "
                 f"fewer than {MIN_SEEDS} seeds. The paper's size is compared with the interval, not voted on.")]


def _cell(rep: Report, cell: tuple, by_variant: dict) -> list[Block]:
    """Everything about one grid cell."""
    ref, spec = rep.ref, rep.spec
    return (_results(rep, cell, by_variant)
            + _speedup_curve(by_variant, ref, rep.table_name("speedup_vs_target", cell))
            + _norm_batches(by_variant, rep.table_name("processes", cell))
            + _drift(by_variant, rep.table_name("sigmoid_inputs", cell))
            + _contrasts(spec.contrasts, by_variant, ref, rep.table_name("contrasts", cell))
            + _claims(spec.claims, by_variant, ref, rep.table_name("claims", cell)))


def _figures(rep: Report) -> list[Block]:
    return [Heading(2, "Figures"), Figures(list(rep.figures))]


def _runs(rep: Report) -> list[Block]:
    keys = rep.keys
    rows = [[f"`{r.variant}`", r.seed, *[str(x) for x in cell_of(r, keys)], r.status, f"{r.steps:,}",
             _pct(r.best_acc), f"{r.best_step:,}" if r.best_step is not None else "–",
             _pct(r.final_acc), _pct(r.get("test_acc_at_best")), _pct(r.get("final_test_acc")), f"{r.train_s:.0f}",
             f"`{r.run_id}`"] for r in rep.records]
    return [Heading(2, "Runs"),
            Para("Every run, also in `runs.csv`. Accuracies in %: `best acc`, `best step` (its first evaluation at "
                 "its best single validation accuracy) and `final acc` on validation; `test at best` and `final test` "
                 "on the test set."),
            Table("runs", ["variant", "seed", *keys, "status", "steps", "best acc", "best step", "final acc",
                           "test at best", "final test", "train s", "run id"], rows)]


def _records(rep: Report) -> list[Block]:
    """Where the records are, and the other forms of this report beside it."""
    where = rep.meta.get("launch_dir") or _relative(rep.launch_dir)
    return [Para(f"Records: `{where}` (also in `{RECORDS}` here, with `{STUDY}`: `bnbench report <this folder>` "
                 "rebuilds this report from them)."),
            Para(f"Also here: `report.html` (this report as one self-contained page, figures inside), "
                 f"`summary.json` (its figures and verdicts, machine-readable) and each table as CSV and LaTeX "
                 f"(booktabs) in `{tables.FOLDER}/`.")]


def sections(rep: Report) -> list[Block]:
    """The whole report, in order."""
    blocks = _header(rep) + _overview(rep)
    for cell, by_variant in rep.cells.items():
        blocks += _cell(rep, cell, by_variant)
    return blocks + _figures(rep) + _runs(rep) + _records(rep)


# the Markdown of two sections, as tests/test_verdicts.py reads them
def _speedup_section(by_variant: dict, ref: str) -> list[str]:
    return [line for b in _speedup_curve(by_variant, ref) for line in md_lines(b)]


def _claims_section(claims: list[dict], by_variant: dict, ref: str | None) -> list[str]:
    return [line for b in _claims(claims, by_variant, ref) for line in md_lines(b)]


def _seconds(xs: list) -> str:
    got = sorted(x for x in xs if x is not None)
    if not got:
        return "–"
    return f"{got[len(got) // 2]:,.0f} s"


def _status(s: VariantSummary) -> str:
    return ", ".join(f"{n} {k}" for k, n in s.statuses().items()) or "no record yet"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "n/a"
    h, rest = divmod(int(round(seconds)), 3600)
    m, s = divmod(rest, 60)
    return f"{h}h {m:02d}m {s:02d}s" if h else f"{m}m {s:02d}s"


def runs_csv(records: list[Record], grid_keys: list[str]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    targets = sorted({t for r in records for t in r.steps_to_target}, key=float)
    w.writerow(["variant", "seed", *grid_keys, "devices", "norm_batch", "status", "steps", "diverged_at", "best_acc",
                "best_step",
                "final_acc", "test_acc_at_best", "final_test_acc", *(f"steps_to_{t}" for t in targets), "train_s",
                "wall_s", "run_id"])
    for r in records:
        w.writerow([r.variant, r.seed, *cell_of(r, grid_keys), r.get("devices", 1), r.norm_batch,
                    r.status, r.steps, r.diverged_at,
                    r.best_acc, r.best_step, r.final_acc, r.get("test_acc_at_best"), r.get("final_test_acc"),
                    *(r.steps_to_target.get(t) for t in targets),
                    f"{r.train_s:.1f}", f"{r.wall_s:.1f}", r.run_id])
    return buf.getvalue()


def build_report(source: Path, out_dir: Path | None = None, out_root: Path = Path("reports")) -> Path:
    """Build the report of a launch (`source` = <results>/<study>/<launch>: a study's, or a
    `bnbench train -m` sweep's, bnbench/report/adhoc.py) or rebuild one from a report folder's
    own archive (`source` = reports/<study>, bnbench/results/archive.py); either way the
    archive is written beside the new report."""
    source = Path(source)
    if has_archive(source):
        meta, archived = read_archive(source)
        launch_dir = Path(meta.get("launch_dir", source))
    else:
        launch_dir = source
        meta, archived = _read_launch(launch_dir)
        meta = {**meta, "launch_dir": _relative(launch_dir)}
        archived = [compact(r) for r in archived]  # as archived: the first build reads what a rebuild reads
    records = [Record.from_json(r) for r in archived]
    spec = parse_study(meta["spec"], meta["study"], Path(meta["spec_path"]))
    spec.seeds = meta["seeds"]  # the seeds this launch ran (hydra.sweeper.seeds may narrow them)
    # a rebuild from a report folder's archive goes back into that folder unless told otherwise
    default = Path(out_root) / spec.name / (meta["launch"] if adhoc.is_multirun(meta) else "")
    out = Path(out_dir) if out_dir else source if has_archive(source) else default
    out.mkdir(parents=True, exist_ok=True)
    keys = list(spec.grid)
    cells = summarize(records, list(spec.variants), spec.reference, spec.cells())

    figures = [plots.accuracy_curves(cells, keys, out / "accuracy.png", f"{spec.name}: validation accuracy")]
    fig = plots.sigmoid_inputs(cells, keys, out / "sigmoid_inputs.png", list(spec.variants))
    if fig:
        figures.append(fig)
    fig = plots.by_norm_batch(cells, keys, out / "norm_batch.png", spec.reference)
    if fig:
        figures.append(fig)
    fig = plots.speedup_vs_target(cells, keys, out / "speedup.png", spec.reference)
    if fig:
        figures.append(fig)
    fig = plots.forest(cells, keys, out / "forest.png", spec.contrasts, spec.reference)
    if fig:
        figures.append(fig)

    rep = Report(spec, meta, records, cells, keys, figures, launch_dir)
    blocks = sections(rep)
    write_atomic(out / "report.md", markdown(blocks))
    write_atomic(out / "report.html", html.render(blocks, f"bnbench report: {spec.name}/{meta['launch']}"))
    written = tables.write_tables(out, document.tables(blocks), f"{spec.name}/{meta['launch']}")
    texts = {cell: {name: (_steps(s), _speedup(s, bv[spec.reference])) for name, s in bv.items()}
             for cell, bv in cells.items()} if spec.reference else {}
    data = summary_json.summary(rep, texts, sorted({p.stem for p in written}))
    write_atomic(out / "summary.json", summary_json.to_json(data))
    write_atomic(out / "runs.csv", runs_csv(records, keys))
    write_archive(out, meta, archived)
    return out / "report.md"


def _read_launch(launch_dir: Path) -> tuple[dict, list[dict]]:
    """A launch's study.json and records; a launch without study.json (`bnbench train -m`)
    gets one made from its records (bnbench/report/adhoc.py)."""
    meta_path = launch_dir / STUDY
    if not meta_path.is_file():
        records = read_records(launch_dir) if launch_dir.is_dir() else []
        if records:
            return adhoc.launch_meta(launch_dir, records)
        raise ConfigError(f"{launch_dir} is not a study launch (no {STUDY}) nor a report folder with its records "
                          f"({RECORDS}), and holds no run records; run `bnbench study <name>` or `bnbench train` first")
    try:
        meta = read_json(meta_path)
    except (OSError, ValueError) as e:  # half-written by hand, or not bnbench's
        raise ConfigError(f"{meta_path} is not readable as a launch's {STUDY} ({e})") from None
    records = read_records(launch_dir)  # skips, with a warning, files that are not run records
    if not records:
        raise ConfigError(f"no finished runs under {launch_dir}")
    return meta, records


# What `bnbench study` added to the user's overrides (its STUDY_DEFAULTS and its own), in the
# `command` of a study.json made before `user_overrides` was kept: not the user's
_CLI_ADDED = ("-m", "hydra/sweeper=study", "hydra/launcher=local", "run.threads=1", "trainer.enable_progress_bar=false")
_CLI_ADDED_KEYS = ("hydra.sweeper.study", "study.launch", "study.name")


def study_command(name: str, meta: dict) -> str:
    """The user's `bnbench study` command, as study.json keeps it (`user_overrides`, written by the
    study sweeper; older ones: the launch's command less what the CLI added). The launch's
    study.launch and study.name are left out: the report names the launch itself."""
    user = meta.get("user_overrides")
    if user is None:
        argv = meta.get("command", [])
        prefixes = tuple(f"{k}=" for k in _CLI_ADDED_KEYS)
        user = [a for a in argv[1:] if a not in _CLI_ADDED and not a.startswith(prefixes)]
    else:
        user = [o for o in user if key_of(o) not in _CLI_ADDED_KEYS]
    return " ".join(["bnbench study", name, *user])


def _resumed(meta) -> str:
    if not meta.get("resumed"):
        return ""
    return (f" (last attempt; relaunched {len(meta['resumed'])} time(s), last at {meta['resumed'][-1]}, "
            f"{len(meta.get('skipped_jobs') or [])} run(s) kept from earlier attempts)")


def _unfinished(meta, records) -> str:
    """A launch whose study command never wrote its end: say so, and how many runs it holds."""
    planned = len(meta.get("jobs") or [])
    return (f"not recorded (the study command did not finish: interrupted, or still running; "
            f"{len(records)} of {planned} planned runs have records; to finish it where its results are gone, "
            f"`bnbench restore` this report's folder and run the command it prints)")


def _launcher(meta: dict) -> str:
    launcher = meta.get("launcher") or {}
    target = str(launcher.get("_target_", "")).rsplit(".", 1)[-1] or "unknown"
    n_jobs = launcher.get("n_jobs")
    return f"{target}" + (f" (n_jobs={n_jobs})" if n_jobs is not None else "")


def _relative(path: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)
