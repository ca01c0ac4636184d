"""report.html: the report's blocks (bnbench/report/document.py) as one self-contained page.

Everything is inside the file: the figures as base64 `data:` URIs, a few lines of CSS, no
script, nothing fetched, so it opens from disk, from a mail or from an archive alike. Every piece
of text (variant names, claims, a study's description) is escaped with `html.escape`; only the
report's own inline markup (`code`, **bold**, *emphasis*) becomes tags.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

from bnbench.report.document import Block, Bullets, Figures, Heading, Para, Quote, Table, spans

STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #1b1b1b; max-width: 1200px;
       margin: 2em auto; padding: 0 1em; }
h1, h2, h3 { line-height: 1.2; }
h2 { border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 1.8em; }
code { font: 0.9em ui-monospace, SFMono-Regular, Menlo, monospace; background: #f3f3f3; padding: 0 .2em;
       border-radius: 3px; }
blockquote { border-left: 4px solid #c0392b; background: #fdf0ee; margin: 1em 0; padding: .5em 1em; }
.table { overflow-x: auto; margin: 1em 0; }
table { border-collapse: collapse; font-size: 0.9em; }
th, td { border: 1px solid #d8d8d8; padding: .3em .6em; text-align: left; vertical-align: top; }
thead th { background: #f4f4f4; }
tbody tr:nth-child(even) { background: #fafafa; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
"""

_TAGS = {"code": "code", "bold": "strong", "em": "em"}


def inline(text) -> str:
    """Text with the report's inline markup as tags, every character of the text escaped."""
    return "".join(html.escape(piece) if kind == "text" else f"<{_TAGS[kind]}>{html.escape(piece)}</{_TAGS[kind]}>"
                   for kind, piece in spans(str(text)))


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _block(block: Block) -> str:
    if isinstance(block, Heading):
        return f"<h{block.level}>{inline(block.text)}</h{block.level}>"
    if isinstance(block, Para):
        return f"<p>{inline(block.text)}</p>"
    if isinstance(block, Quote):
        return f"<blockquote>{inline(block.text)}</blockquote>"
    if isinstance(block, Bullets):
        return "<ul>\n" + "\n".join(f"<li>{inline(item)}</li>" for item in block.items) + "\n</ul>"
    if isinstance(block, Table):
        head = "".join(f"<th>{inline(h)}</th>" for h in block.headers)
        body = "\n".join("<tr>" + "".join(f"<td>{inline(c)}</td>" for c in row) + "</tr>" for row in block.rows)
        return (f'<div class="table" id="table-{html.escape(block.name, quote=True)}"><table>\n'
                f"<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table></div>")
    if isinstance(block, Figures):
        return "\n".join(f'<figure><img src="{data_uri(p)}" alt="{html.escape(p.stem, quote=True)}">'
                         f"<figcaption>{html.escape(p.name)}</figcaption></figure>" for p in block.paths)
    raise TypeError(f"not a report block: {block!r}")


def render(blocks: list[Block], title: str) -> str:
    body = "\n".join(_block(b) for b in blocks)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}\n</body>\n</html>\n")
