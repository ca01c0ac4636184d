"""The report's outputs beside report.md: report.html, summary.json, each table as CSV and LaTeX,
the figures (band, zoom, forest), and a `bnbench train -m` launch reported like a study.

The first tests build one report from crafted records (a study with two grid cells, add-one-in
and leave-one-out variants, a variant and a claim whose names hold markup) and read every output
independently of the code that wrote it: the tables of report.md, report.html and the CSV files
hold the same cells, summary.json the same numbers. The HTML in a real browser:
tests/test_report_browser.py (-m browser)."""

from __future__ import annotations

import base64
import hashlib
import csv
import io
import json
import math
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from bnbench.report.build import build_report
from bnbench.report.document import plain
from bnbench.results.archive import read_archive, write_archive
from conftest import run_cli

MARKUP = "<script>alert(1)</script> & co"  # a variant name that is also HTML
CLAIM = "<b>BN</b> is faster & 50% of_it ~ {x} ^ $ # \\"
STEPS = list(range(10, 410, 10))


def _curve(top: float, tau: float, seed: int) -> list[float]:
    wiggle = [((seed * 7 + i * 13) % 11 - 5) / 1000 for i in range(len(STEPS))]
    return [round(0.1 + (top - 0.1) * (1 - math.exp(-s / tau)) + w, 4) for s, w in zip(STEPS, wiggle)]


def fake_record(variant: str, seed: int, lr: float, top: float, tau: float, status: str = "completed") -> dict:
    acc = _curve(top, tau, seed)
    steps = STEPS
    if status == "diverged":
        steps, acc = steps[:5], acc[:5]
    return {
        "schema": 1, "run_id": hashlib.sha1(f"{variant}{seed}{lr}".encode()).hexdigest()[:12], "status": status,
        "study": "crafted", "launch": "2026-01-01_00-00-00", "variant": variant, "seed": seed,
        "steps": steps[-1], "max_steps": STEPS[-1], "diverged_at": steps[-1] if status == "diverged" else None,
        "best_acc": max(acc), "best_step": steps[acc.index(max(acc))],
        "final_acc": acc[-1] if status == "completed" else None, "steps_to_target": {"0.5": None}, "train_s": 12.0,
        "wall_s": 14.0, "num_classes": 10, "co_batch_rate": 0.1, "devices": 1, "norm_batch": 60,
        "env": {"git": {"sha": "0123456789abcdef", "dirty": False},
                "packages": {"torch": "2.13.0", "pytorch-lightning": "2.6.6"},
                "device": "cpu", "device_name": "test CPU", "torch_threads": 1},
        "config": {"recipe": {"lr": lr}, "run": {"eval_every": 10}, "norm": {"stats": "device"}},
        "curves": {"step": steps, "acc": acc, "train_s": [s / 10 for s in steps]},
    }


# variant -> (end accuracy, time constant of its curve)
VARIANTS = {"base": (0.80, 120), "bn": (0.86, 40), "add_lr": (0.87, 30), MARKUP: (0.84, 60),
            "full": (0.88, 25), "loo_lr": (0.86, 40)}
SPEC = {
    "description": "Crafted: a <b>bold</b> description & co.",
    "seeds": [0, 1, 2],
    "variants": {v: [f"experiment={i}"] for i, v in enumerate(VARIANTS)},
    "grid": {"recipe.lr": [0.1, 0.5]},
    "reference": "base",
    "contrasts": [["add_lr", "bn"], ["full", "loo_lr"], [MARKUP, "bn"]],
    "claims": [{"claim": CLAIM, "rule": "faster", "variant": "bn"},
               {"claim": "the markup variant ends higher", "rule": "higher_final", "variant": MARKUP}],
}


@pytest.fixture(scope="module")
def report(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("crafted") / "crafted"
    records = [fake_record(v, seed, lr, top - (lr == 0.5) * 0.02, tau * (1 + seed / 10),
                           "diverged" if (v, seed, lr) == ("loo_lr", 2, 0.5) else "completed")
               for lr in (0.1, 0.5) for v, (top, tau) in VARIANTS.items() for seed in (0, 1, 2)]
    meta = {"study": "crafted", "launch": "2026-01-01_00-00-00", "spec": SPEC, "spec_path": "crafted.yaml",
            "seeds": [0, 1, 2], "command": ["bnbench", "study", "crafted"], "started": "then", "finished": "later",
            "wall_s": 60, "launcher": {"_target_": "x.BasicLauncher"}, "jobs": list(range(len(records)))}
    write_archive(folder, meta, records)
    build_report(folder)
    return folder


def md_tables(text: str) -> list[list[list[str]]]:
    """report.md's tables: rows of cells (header first, the |---| line dropped)."""
    tables, current = [], []
    for line in text.splitlines() + [""]:
        if line.startswith("|"):
            if not line.startswith("|---"):
                current.append([c.strip() for c in line.strip()[1:-1].split(" | ")])
        elif current:
            tables.append(current)
            current = []
    return tables


class _Html(HTMLParser):
    """Tables (cell text, tags dropped, entities decoded), images, and every tag seen."""

    def __init__(self):
        super().__init__()
        self.tables, self.images, self.tags, self.cell = [], [], [], None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "table":
            self.tables.append([])
        elif tag == "tr":
            self.tables[-1].append([])
        elif tag in ("td", "th"):
            self.cell = ""
        elif tag == "img":
            self.images.append(dict(attrs))

    def handle_endtag(self, tag):
        if tag in ("td", "th"):
            self.tables[-1][-1].append(self.cell)
            self.cell = None

    def handle_data(self, data):
        if self.cell is not None:
            self.cell += data


def parse_html(path: Path) -> _Html:
    parser = _Html()
    parser.feed(path.read_text())
    return parser


def test_md_html_and_csv_tables_hold_the_same_cells(report):
    md = [[[plain(c) for c in row] for row in t] for t in md_tables((report / "report.md").read_text())]
    page = parse_html(report / "report.html").tables
    csvs = {p.stem: list(csv.reader(io.StringIO(p.read_text()))) for p in (report / "tables").glob("*.csv")}
    assert len(md) == len(page) == len(csvs) == 10  # overview, runs; results, speed-ups, contrasts, claims per cell
    assert page == md
    for name, rows in csvs.items():
        assert rows in md, name
    assert {"overview", "runs", "results_recipe.lr=0.1", "contrasts_recipe.lr=0.5", "claims_recipe.lr=0.5"} <= set(csvs)
    assert sorted(csvs) == json.loads((report / "summary.json").read_text())["tables"]


def test_summary_json_has_the_reports_numbers_and_verdicts(report):
    data = json.loads((report / "summary.json").read_text())
    text = (report / "report.md").read_text()
    assert data["study"] == "crafted" and data["reference"] == "base" and data["grid_keys"] == ["recipe.lr"]
    assert [c["cell"] for c in data["cells"]] == [{"recipe.lr": 0.1}, {"recipe.lr": 0.5}]
    for cell, table in zip(data["cells"], [t for t in md_tables(text) if t[0][:2] == ["variant", "runs"]]):
        by_name = {row[0].strip("`"): row for row in table[1:]}
        for v in cell["variants"]:
            row = by_name[v["variant"]]
            assert row[1] == str(v["runs"])
            assert row[6].startswith(f"{v['best_acc']['mean'] * 100:.2f} ± {v['best_acc']['sd'] * 100:.2f}")
            assert row[3] == v["steps_to_target"]["text"]
            if v["variant"] != "base":
                assert row[4] == v["speedup"]["text"]
                assert len(v["speedup_vs_target"]) == 7 and v["speedup_vs_target"][-1]["fraction"] == 1.0
        assert {v["variant"] for v in cell["variants"]} == set(VARIANTS)
        assert [len(v["best_acc"]["per_seed"]) for v in cell["variants"]] == [3] * len(VARIANTS)
    claims = [t for t in md_tables(text) if t[0][0] == "claim"][1][1:]  # the second cell's claims table
    for row, claim in zip(claims, data["cells"][1]["claims"]):
        assert row[-1] == f"**{claim['verdict']}**" and row[3] == claim["effect"]
        iv = claim["interval"]
        assert claim["rule"] in ("faster", "higher_final") and iv["n"] == 3 and iv["low"] <= iv["high"]
    faster = data["cells"][0]["claims"][0]
    assert faster["claim"] == CLAIM and faster["unit"].startswith("speed-up") and faster["interval"]["point"] > 1
    contrast = data["cells"][1]["contrasts"][1]  # full vs loo_lr: loo_lr seed 2 diverged there
    assert contrast["variant"] == "full" and contrast["never_reached"]["against"] == [2]
    assert contrast["speedup"]["point"] is None and contrast["speedup"]["high"] is None  # bounds only, unbounded
    assert contrast["end_acc_difference"]["n"] == 2
    assert len(data["runs"]) == 36 and data["runs"][0]["end_acc"] is not None


def test_markup_in_names_is_text_in_every_output(report):
    html_text = (report / "report.html").read_text()
    assert "<script" not in html_text and "<b>" not in html_text
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; co" in html_text
    assert "&lt;b&gt;BN&lt;/b&gt; is faster &amp; 50% of_it" in html_text
    assert "Crafted: a &lt;b&gt;bold&lt;/b&gt; description &amp; co." in html_text
    page = parse_html(report / "report.html")
    assert not {"script", "b", "iframe", "link"} & set(page.tags)
    assert any(row[0] == MARKUP for t in page.tables for row in t)  # shown as the text it is
    md = (report / "report.md").read_text()
    assert f"`{MARKUP}`" in md  # Markdown: in a code span
    assert MARKUP in (report / "tables" / "results_recipe.lr=0.1.csv").read_text()
    tex = (report / "tables" / "results_recipe.lr=0.1.tex").read_text()
    assert r"\texttt{\textless{}script\textgreater{}alert(1)\textless{}/script\textgreater{} \& co}" in tex
    claims_tex = (report / "tables" / "claims_recipe.lr=0.1.tex").read_text()
    assert (r"\textless{}b\textgreater{}BN\textless{}/b\textgreater{} is faster \& 50\% of\_it "
            r"\textasciitilde{} \{x\} \textasciicircum{} \$ \# \textbackslash{}") in claims_tex


def test_html_is_self_contained_with_every_figure_inline(report):
    text = (report / "report.html").read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|//|file:)""", text) and "@import" not in text
    images = parse_html(report / "report.html").images
    assert [i["alt"] for i in images] == ["accuracy", "speedup", "forest"]  # no probe, one batch size
    for img in images:
        assert img["src"].startswith("data:image/png;base64,")
        png = base64.b64decode(img["src"].split(",", 1)[1], validate=True)
        assert png == (report / f"{img['alt']}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
        assert 300 < width < 5000 and 200 < height < 5000, (img["alt"], width, height)


def test_latex_tables_are_booktabs_with_one_cell_per_column(report):
    for path in (report / "tables").glob("*.tex"):
        lines = path.read_text().splitlines()
        assert lines[0].startswith("% crafted/") and "booktabs" in lines[0]
        begin = lines.index(next(line for line in lines if line.startswith(r"\begin{tabular}")))
        columns = len(re.search(r"\{(l+)\}$", lines[begin]).group(1))
        assert lines[begin + 1] == r"\toprule" and lines[begin + 3] == r"\midrule"
        assert lines[-2:] == [r"\bottomrule", r"\end{tabular}"]
        rows = [lines[begin + 2]] + lines[begin + 4:-2]
        assert rows == [line for line in rows if line.endswith(r" \\")]
        for row in rows:  # an unescaped & would add a column
            assert len(re.split(r"(?<!\\)&", row)) == columns, (path.name, row)
        csv_rows = list(csv.reader(io.StringIO(path.with_suffix(".csv").read_text())))
        assert len(rows) == len(csv_rows)


def test_latex_escapes_every_special_character():
    from bnbench.report.tables import latex_inline

    assert latex_inline(r"a_b & 5% $x$ #1 {y} ~ ^ \ <i> | ± × ∞ –") == (
        r"a\_b \& 5\% \$x\$ \#1 \{y\} \textasciitilde{} \textasciicircum{} \textbackslash{} \textless{}i\textgreater{} "
        r"\textbar{} \ensuremath{\pm} \ensuremath{\times} \ensuremath{\infty} --")
    assert latex_inline("`a_b` **holds** *note*") == r"\texttt{a\_b} \textbf{holds} \emph{note}"


def test_figures_band_zoom_and_forest(report):
    from bnbench.report.plots import _zoom_window

    assert (report / "forest.png").exists() and "![forest](forest.png)" in (report / "report.md").read_text()
    # the zoomed panel: from the best accuracy down to the lowest end level (mean of the last 5)
    # among the curves ending within 10 points of it, 10% of that span beyond each end, from the
    # first step any curve is inside; a curve ending far below does not widen it
    x = np.arange(10, 110, 10)
    lines = [(x, np.array([0.1, 0.3, 0.5, 0.7, 0.9, 0.9, 0.9, 0.9, 0.9, 0.9])),
             (x, np.array([0.1, 0.3, 0.5, 0.7, 0.8, 0.86, 0.86, 0.86, 0.86, 0.86])),
             (x, np.array([0.1, 0.2, 0.3, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4, 0.4]))]
    first, low, high = _zoom_window(lines)
    assert first == 50 and low == pytest.approx(0.856) and high == pytest.approx(0.904)
    assert _zoom_window([(x, np.full(10, np.nan))]) is None


def test_a_claim_names_its_interval_unit():
    from bnbench.report.claims import RULES, UNITS

    assert set(UNITS) == set(RULES)


# --------------------------------------------------------------------------- bnbench train -m


def test_swept_keys_name_the_variants():
    from bnbench.report.adhoc import swept_keys, variant_name

    base = ["data.root=/d", "logger=none"]
    recs = [{"overrides": [*base, f"recipe.lr={lr}", f"norm={n}", f"seed={s}"], "variant": None}
            for lr in ("0.1", "10", "2") for n in ("batch", "none") for s in (0, 1)]
    keys = swept_keys(recs)
    assert keys == ["recipe.lr", "norm"]
    assert variant_name(recs[0], keys) == "recipe.lr=0.1,norm=batch"
    assert variant_name({"overrides": [*base, "seed=3"], "variant": None}, swept_keys(recs[:1])) == "run"


def test_a_bnbench_train_multirun_launch_gets_a_report(tiny_data, tmp_path):
    proc = run_cli("train", "-m", f"data.root={tiny_data}", "logger=none", "trainer.max_steps=20",
                   "run.eval_every=10", "norm=none,batch", "seed=0,1", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    (launch,) = (tmp_path / "results" / "adhoc").iterdir()
    assert not (launch / "study.json").exists()
    done = run_cli("report", str(launch.relative_to(tmp_path)), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    out = tmp_path / "reports" / "adhoc" / launch.name
    md = (out / "report.md").read_text()
    assert md.startswith(f"# Launch `adhoc/{launch.name}`")
    assert (f"- Command: `bnbench train -m data.root={tiny_data} logger=none trainer.max_steps=20 "
            "run.eval_every=10 norm=none,batch seed=0,1`") in md
    assert "2 variants × 1 grid cell(s) × seeds [0, 1]" in md and "Launcher: BasicLauncher" in md
    assert "| `norm=batch` | 2 | 2 completed |" in md and "| `norm=none` | 2 | 2 completed |" in md
    assert "claims" not in md and "Contrasts" not in md
    data = json.loads((out / "summary.json").read_text())
    assert data["kind"] == "multirun" and data["variants"] == ["norm=batch", "norm=none"] and data["seeds"] == [0, 1]
    assert not (out / "forest.png").exists() and (out / "report.html").exists()
    # the report folder alone rebuilds it, every file byte for byte
    shutil.copytree(out, tmp_path / "copy")
    build_report(tmp_path / "copy")
    files = sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file())
    assert {"report.html", "summary.json", "tables/results.csv", "tables/results.tex", "accuracy.png"} <= {
        str(f) for f in files}
    assert [f for f in files if (tmp_path / "copy" / f).read_bytes() != (out / f).read_bytes()] == []
    # the study name finds the latest launch; without Hydra's multirun.yaml (outputs/ gone) the
    # command is rebuilt from the runs' overrides, and says so
    shutil.rmtree(tmp_path / "outputs")
    by_name = run_cli("report", "adhoc", "--out", "again", cwd=tmp_path)
    assert by_name.returncode == 0, by_name.stderr[-3000:]
    again = (tmp_path / "again" / "report.md").read_text()
    assert "norm=batch,none seed=0,1` (rebuilt from the runs' overrides: Hydra's multirun.yaml was not found)" in again
    assert again.split("## Results")[1] == md.split("## Results")[1]
    meta, records = read_archive(tmp_path / "again")
    assert {r["variant"] for r in records} == {"norm=batch", "norm=none"} and meta["seeds"] == [0, 1]


def test_a_folder_with_neither_records_nor_a_report_is_one_error(tmp_path):
    from bnbench.errors import ConfigError

    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="holds no run records"):
        build_report(tmp_path / "empty", out_root=tmp_path / "reports")
    assert not (tmp_path / "reports").exists()
