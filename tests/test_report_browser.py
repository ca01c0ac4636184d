"""report.html in a real browser (Debian's chromium, headless): it renders, every figure loads,
and a variant name holding markup shows as text and runs nothing. Each check is shown to fail on
a page where it must (a figure broken on purpose, the name written unescaped, a blank page).

`make test-browser` installs chromium if missing and runs these (-m browser; deselected by
default). The report is a real tiny study's; its variant `bn` is renamed in the report's own
archive to `<script>alert(1)</script> & co` and the report rebuilt from it (`bnbench report
<folder>`): the study itself could not run under that name, whose `/` would split its run folder.

How a figure is known to load: a copy of the page, made here only (report.html itself has no
script), gets a script that records any alert() and, once the page has loaded, writes into the
page every image's natural size and the sum of its pixels' RGBA values as the browser decoded
it (drawn on a canvas); chromium's --dump-dom prints the page after its load event. Each must
equal the PNG file's (its header; Pillow's decoding): an image that is not an image has a
natural size of 0 x 0, one whose data is damaged past its header decodes to other pixels."""

from __future__ import annotations

import html
import json
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from bnbench.results.archive import read_archive, write_archive
from conftest import run_cli

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if not CHROMIUM:
    pytestmark = [pytest.mark.browser, pytest.mark.skip(reason="Debian's chromium is not installed "
                                                                "(`make test-browser` installs it)")]

MARKUP = "<script>alert(1)</script> & co"
SPY = "<script>window.__alerts = []; window.alert = function (m) { window.__alerts.push(String(m)); };</script>"
REPORTER = """<script>window.addEventListener("load", function () {
  var out = document.createElement("pre"); out.id = "page-check";
  out.textContent = JSON.stringify({
    alerts: window.__alerts, scripts: document.scripts.length,
    bold: document.querySelectorAll("b").length,
    text: document.body.innerText,
    images: Array.from(document.images).map(function (i) {
      var sum = null;
      if (i.naturalWidth) {
        var c = document.createElement("canvas"); c.width = i.naturalWidth; c.height = i.naturalHeight;
        var g = c.getContext("2d"); g.drawImage(i, 0, 0);
        var d = g.getImageData(0, 0, c.width, c.height).data;
        sum = 0; for (var k = 0; k < d.length; k++) sum += d[k];
      }
      return [i.alt, i.complete, i.naturalWidth, i.naturalHeight, sum];
    })
  });
  document.body.appendChild(out);
});</script>"""


def chromium(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
                           f"--user-data-dir={tmp_path / 'chromium-profile'}", *args],
                          capture_output=True, text=True, timeout=120)


def instrumented(page: Path, into: Path, change=lambda text: text) -> Path:
    """A copy of `page` with the spy first in <head> and the reporter last in <body>."""
    text = change(page.read_text())
    assert text.count("<head>") == 1 and text.count("</body>") == 1
    into.write_text(text.replace("<head>", "<head>" + SPY).replace("</body>", REPORTER + "</body>"))
    return into


def page_check(tmp_path: Path, page: Path) -> dict:
    proc = chromium(tmp_path, "--dump-dom", page.resolve().as_uri())
    found = re.search(r'<pre id="page-check">(.*?)</pre>', proc.stdout, re.S)
    assert found, (proc.returncode, proc.stderr[-2000:], proc.stdout[-2000:])
    return json.loads(html.unescape(found.group(1)))


def png_figure(path: Path) -> tuple[int, int, int]:
    """(width, height) from the PNG's header, and the sum of its RGBA values decoded by Pillow."""
    import numpy as np
    from PIL import Image

    width, height = struct.unpack(">II", path.read_bytes()[16:24])
    return width, height, int(np.asarray(Image.open(path).convert("RGBA"), dtype=np.int64).sum())


def assert_page_is_sound(check: dict, report: Path) -> None:
    """Every figure of the report is on the page, loaded, at its size and with its pixels; the
    name is text; no script of the page's own ran or exists (the spy and the reporter are the
    page's 2 scripts)."""
    figures = {p.stem: png_figure(p) for p in report.glob("*.png")}
    assert sorted(alt for alt, *_ in check["images"]) == sorted(figures)
    for alt, complete, width, height, pixels in check["images"]:
        assert complete and (width, height, pixels) == figures[alt], (alt, complete, width, height, pixels)
    assert check["alerts"] == [] and check["scripts"] == 2 and check["bold"] == 0
    assert MARKUP in check["text"] and "tiny <b>study</b> & co" in check["text"]


@pytest.fixture(scope="module")
def report(tiny_data, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser")
    study = root / "tiny.yaml"
    study.write_text(
        "description: tiny <b>study</b> & co\nseeds: [0, 1]\nvariants:\n  plain: [experiment=mnist_baseline]\n"
        "  bn: [experiment=mnist_bn]\nreference: plain\ncontrasts:\n  - [bn, plain]\n"
        "claims:\n  - {claim: BN is faster & <i>better</i>, rule: faster, variant: bn}\n")
    proc = run_cli("study", str(study), f"data.root={tiny_data}", "logger=none", "trainer.max_steps=60",
                   "run.eval_every=20", "hydra.launcher.n_jobs=2", cwd=root)
    assert proc.returncode == 0, proc.stderr[-3000:]
    folder = root / "reports" / "tiny"
    meta, records = read_archive(folder)
    spec = meta["spec"]
    spec["variants"] = {(MARKUP if v == "bn" else v): o for v, o in spec["variants"].items()}
    spec["contrasts"] = [[MARKUP, "plain"]]
    spec["claims"][0]["variant"] = MARKUP
    for r in records:
        r["variant"] = MARKUP if r["variant"] == "bn" else r["variant"]
    write_archive(folder, meta, records)
    rebuilt = run_cli("report", str(folder), cwd=root)
    assert rebuilt.returncode == 0, rebuilt.stderr[-3000:]
    assert f"| `{MARKUP}` | 2 |" in (folder / "report.md").read_text()
    return folder


def test_the_page_renders_every_figure_loads_and_the_markup_is_text(report, tmp_path):
    page = report / "report.html"
    assert "<script" not in page.read_text()  # the report itself: no script at all
    check = page_check(tmp_path, instrumented(page, tmp_path / "check.html"))
    assert_page_is_sound(check, report)
    assert len(check["images"]) >= 4  # accuracy, sigmoid inputs, speed-up, forest


def _damage(nth: int, offset: int, bytes_: str):
    """Overwrite base64 characters `offset` into the nth figure's data."""
    def change(text: str) -> str:
        at = [m.end() for m in re.finditer("data:image/png;base64,", text)][nth] + offset
        return text[:at] + bytes_ + text[at + len(bytes_):]
    return change


@pytest.mark.parametrize("nth,offset,damage,why", [
    (0, 400, "AAAAAAAA", "pixels"),  # still base64 and a PNG header, damaged image data: other pixels
    (1, 40, "!!!!", "size"),  # no longer base64: not an image at all, natural size 0 x 0
])
def test_the_check_fails_on_a_broken_figure(report, tmp_path, nth, offset, damage, why):
    page = instrumented(report / "report.html", tmp_path / "broken.html", _damage(nth, offset, damage))
    check = page_check(tmp_path, page)
    figures = {p.stem: png_figure(p) for p in report.glob("*.png")}
    wrong = [img for img in check["images"] if tuple(img[2:]) != figures[img[0]]]
    assert [img[0] for img in wrong] == [check["images"][nth][0]]  # that figure, and only it
    assert (wrong[0][2] == 0) == (why == "size")
    with pytest.raises(AssertionError):
        assert_page_is_sound(check, report)


def test_the_check_fails_on_a_name_written_unescaped(report, tmp_path):
    escaped = html.escape(MARKUP)
    check = page_check(tmp_path, instrumented(report / "report.html", tmp_path / "unescaped.html",
                                              lambda text: text.replace(escaped, MARKUP)))
    assert check["alerts"] and set(check["alerts"]) == {"1"}  # the name ran as a script, wherever it stood
    with pytest.raises(AssertionError):
        assert_page_is_sound(check, report)


def test_a_screenshot_of_the_page_is_not_blank(report, tmp_path):
    from PIL import Image

    def shot(page: Path, name: str) -> Image.Image:
        out = tmp_path / name
        proc = chromium(tmp_path, "--window-size=1280,2400", f"--screenshot={out}", page.resolve().as_uri())
        assert out.is_file(), proc.stderr[-2000:]
        return Image.open(out).convert("RGB")

    def colours(image: Image.Image) -> int:
        return len(image.getcolors(maxcolors=1 << 20) or range(1 << 20))

    image = shot(report / "report.html", "report.png")
    assert image.size == (1280, 2400)
    assert colours(image) > 500  # text, tables and figures, not a blank page
    (tmp_path / "blank.html").write_text("<!DOCTYPE html><html><body></body></html>")
    assert colours(shot(tmp_path / "blank.html", "blank.png")) < 5  # what the check would see on a blank page
