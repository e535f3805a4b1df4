"""Headless Chromium as a layout checker: load a page with a measuring script injected, let it
run (virtual time: no waiting on the machine's speed), and read the script's findings from the
DOM Chromium dumps.

The script reports, for a viewport ``width`` px wide:

* ``wide``: elements whose box reaches beyond the viewport (a table cut off on the right);
* ``overlaps``: pairs of text labels of one chart whose boxes intersect (an axis label on
  another, a legend entry on the next);
* ``outside``: chart labels that stick out of their chart (cut off by the SVG's edge).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
MARKER = "layout-check"
_SCRIPT = """
<script>
window.addEventListener("load", () => {
  const vw = document.documentElement.clientWidth;
  const name = (el) => el.tagName.toLowerCase() + (el.id ? "#" + el.id : "")
    + (el.closest("section") ? " in #" + el.closest("section").id : "");
  const wide = [];
  for (const el of document.body.querySelectorAll("*")) {
    const r = el.getBoundingClientRect();
    if (r.width > 0 && (r.right > vw + 0.5 || r.left < -0.5)) {
      wide.push(name(el) + " spans " + Math.round(r.left) + ".." + Math.round(r.right));
    }
  }
  const overlaps = [], outside = [];
  const hit = (a, b) => a.left < b.right - 0.5 && b.left < a.right - 0.5
    && a.top < b.bottom - 0.5 && b.top < a.bottom - 0.5;
  for (const svg of document.querySelectorAll("svg")) {
    const box = svg.getBoundingClientRect();
    const chart = (svg.getAttribute("aria-label") || "chart");
    const texts = [...svg.querySelectorAll("text")]
      .map((t) => [t.textContent.trim(), t.getBoundingClientRect()])
      .filter(([s, r]) => s && r.width > 0);
    texts.forEach(([s, r], i) => {
      if (r.left < box.left - 0.5 || r.right > box.right + 0.5
          || r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5) {
        outside.push(chart + ": " + s);
      }
      for (const [u, q] of texts.slice(i + 1)) {
        if (hit(r, q)) overlaps.push(chart + ": " + JSON.stringify(s) + " on " + JSON.stringify(u));
      }
    });
  }
  const out = document.createElement("pre");
  out.id = "MARKER";
  out.textContent = JSON.stringify({viewport: vw,
    scrollWidth: document.documentElement.scrollWidth, wide, overlaps, outside});
  document.body.appendChild(out);
});
</script>
""".replace("MARKER", MARKER)


def chromium() -> str | None:
    """The first Chromium (or Chrome) on PATH."""
    return next((p for p in map(shutil.which, CANDIDATES) if p), None)


def _run(binary: str, page: Path, width: int, *extra: str) -> subprocess.CompletedProcess[str]:
    # --no-sandbox: CI runs as root; virtual time runs the load handler without a real wait
    args = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    args += ["--no-first-run", "--disable-dev-shm-usage", f"--window-size={width},1000"]
    args += ["--virtual-time-budget=5000", *extra, page.as_uri()]
    # a generous deadline against a hung browser only; nothing here depends on speed
    return subprocess.run(args, capture_output=True, text=True, timeout=180, check=False)


def measure(html: str, width: int = 1280, binary: str | None = None) -> dict[str, Any]:
    """Render ``html`` at ``width`` px and return the script's findings."""
    binary = binary or chromium()
    assert binary is not None, "no Chromium on PATH"
    body_end = html.rindex("</body>")
    with tempfile.TemporaryDirectory(prefix="traild-layout-") as tmp:
        page = Path(tmp) / "page.html"
        page.write_text(html[:body_end] + _SCRIPT + html[body_end:], encoding="utf-8")
        proc = _run(binary, page, width, "--dump-dom")
    start = proc.stdout.find(f'<pre id="{MARKER}">')
    assert start >= 0, f"Chromium gave no layout report (exit {proc.returncode}): {proc.stderr}"
    text = proc.stdout[start:].split(">", 1)[1].split("</pre>", 1)[0]
    result: dict[str, Any] = json.loads(_unescape(text))
    return result


def screenshot(html: str, path: Path, width: int = 1280, height: int = 1000) -> None:
    """A PNG of the top ``height`` px of ``html`` at ``width`` px."""
    binary = chromium()
    assert binary is not None, "no Chromium on PATH"
    with tempfile.TemporaryDirectory(prefix="traild-shot-") as tmp:
        page = Path(tmp) / "page.html"
        page.write_text(html, encoding="utf-8")
        args = [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
        args += [f"--window-size={width},{height}", f"--screenshot={path}", page.as_uri()]
        subprocess.run(args, capture_output=True, timeout=180, check=True)


def _unescape(text: str) -> str:
    from html import unescape

    return unescape(text)
