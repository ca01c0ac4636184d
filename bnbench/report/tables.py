"""Every table of the report as CSV and as a LaTeX booktabs tabular: tables/<name>.csv, .tex.

The same rows as report.md's (bnbench/report/document.py's Table blocks), so the numbers pasted
into a paper or a spreadsheet are the report's. CSV cells drop the inline markup; LaTeX cells
have it as \\texttt / \\textbf / \\emph and every character LaTeX treats specially escaped
(& % $ # _ { } ~ ^ \\ < > |), with the report's few non-ASCII symbols (±, ×, ∞, –, ...) as
commands, so a .tex file compiles with pdflatex and `\\usepackage{booktabs}` alone.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from bnbench.report.document import Table, plain, spans
from bnbench.results.store import write_atomic

FOLDER = "tables"

_LATEX = {
    "\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
    "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "<": r"\textless{}", ">": r"\textgreater{}",
    "|": r"\textbar{}",
    "±": r"\ensuremath{\pm}", "×": r"\ensuremath{\times}", "∞": r"\ensuremath{\infty}", "–": "--", "—": "---",
    "−": r"\ensuremath{-}", "≥": r"\ensuremath{\geq}", "≤": r"\ensuremath{\leq}",
    "→": r"\ensuremath{\rightarrow}",
    "…": r"\ldots{}", "µ": r"\ensuremath{\mu}", "’": "'", "“": "``", "”": "''",
}
_COMMANDS = {"code": r"\texttt", "bold": r"\textbf", "em": r"\emph"}


def latex_escape(text: str) -> str:
    return "".join(_LATEX.get(ch, ch) for ch in text)


def latex_inline(text) -> str:
    return "".join(latex_escape(piece) if kind == "text" else f"{_COMMANDS[kind]}{{{latex_escape(piece)}}}"
                   for kind, piece in spans(str(text)))


def to_csv(table: Table) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow([plain(h) for h in table.headers])
    w.writerows([plain(c) for c in row] for row in table.rows)
    return buf.getvalue()


def to_latex(table: Table, source: str) -> str:
    """A booktabs tabular (\\toprule, \\midrule, \\bottomrule); columns left-aligned (cells mix numbers
    and words)."""
    lines = [f"% {latex_escape(source)}: table {latex_escape(table.name)} "
             "(bnbench report; needs \\usepackage{booktabs})",
             r"\begin{tabular}{" + "l" * len(table.headers) + "}", r"\toprule",
             " & ".join(latex_inline(h) for h in table.headers) + r" \\", r"\midrule"]
    lines += [" & ".join(latex_inline(c) for c in row) + r" \\" for row in table.rows]
    lines += [r"\bottomrule", r"\end{tabular}", ""]
    return "\n".join(lines)


def write_tables(out: Path, tables: list[Table], source: str) -> list[Path]:
    """tables/<name>.csv and .tex for each table; files of tables no longer in the report go."""
    folder = Path(out) / FOLDER
    written = []
    for t in tables:
        written.append(write_atomic(folder / f"{t.name}.csv", to_csv(t)))
        written.append(write_atomic(folder / f"{t.name}.tex", to_latex(t, source)))
    for stale in [*folder.glob("*.csv"), *folder.glob("*.tex")]:
        if stale not in written:
            stale.unlink()
    return written
