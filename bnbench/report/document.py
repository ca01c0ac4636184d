"""A report as a list of blocks (headings, paragraphs, tables, figures), written out as Markdown.

The report's sections (bnbench/report/build.py) produce blocks, not text, so that report.md,
report.html (bnbench/report/html.py) and the tables as CSV and LaTeX (bnbench/report/tables.py)
are renderings of the same data and say the same thing.

Text in blocks is Markdown's inline subset that the report uses: `code`, **bold**, *emphasis*.
Each renderer reads it with `spans`, so no renderer passes text through unescaped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Heading:
    level: int
    text: str


@dataclass(frozen=True)
class Para:
    text: str


@dataclass(frozen=True)
class Quote:
    """A call-out (Markdown's `> ...`): a warning at the top of the report."""

    text: str


@dataclass(frozen=True)
class Bullets:
    items: list[str]


@dataclass(frozen=True)
class Table:
    """`name` names the table's CSV and LaTeX files (tables/<name>.csv, .tex)."""

    name: str
    headers: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class Figures:
    paths: list[Path] = field(default_factory=list)


Block = Heading | Para | Quote | Bullets | Table | Figures


# --------------------------------------------------------------------------- inline text

_SPAN = re.compile(r"`([^`]*)`|\*\*(.+?)\*\*|\*([^*\s][^*]*?)\*")


def spans(text: str) -> list[tuple[str, str]]:
    """Inline Markdown as (kind, text) pieces, kind one of "text", "code", "bold", "em"."""
    out, at = [], 0
    for m in _SPAN.finditer(text):
        if m.start() > at:
            out.append(("text", text[at:m.start()]))
        kind = "code" if m.group(1) is not None else "bold" if m.group(2) is not None else "em"
        out.append((kind, m.group(1) if kind == "code" else m.group(2) if kind == "bold" else m.group(3)))
        at = m.end()
    if at < len(text):
        out.append(("text", text[at:]))
    return out


def plain(text: str) -> str:
    """The text without its inline markup (CSV cells)."""
    return "".join(piece for _, piece in spans(str(text)))


# --------------------------------------------------------------------------- Markdown


def md_table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def md_lines(block: Block) -> list[str]:
    """One block as Markdown lines, a blank line after it."""
    if isinstance(block, Heading):
        return ["#" * block.level + " " + block.text, ""]
    if isinstance(block, Para):
        return [block.text, ""]
    if isinstance(block, Quote):
        return ["> " + block.text, ""]
    if isinstance(block, Bullets):
        return [f"- {item}" for item in block.items] + [""]
    if isinstance(block, Table):
        return [md_table(block.headers, block.rows), ""]
    if isinstance(block, Figures):
        return [f"![{p.stem}]({p.name})" for p in block.paths] + [""]
    raise TypeError(f"not a report block: {block!r}")


def markdown(blocks: list[Block]) -> str:
    return "\n".join(line for block in blocks for line in md_lines(block))


def tables(blocks: list[Block]) -> list[Table]:
    return [b for b in blocks if isinstance(b, Table)]
