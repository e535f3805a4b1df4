"""Regenerate the README's screenshots (docs/*.png): nothing of the data is copied, only charts.

    PYTHONPATH=. python docs/screenshots.py

* ``report-outcomes.png``, ``report-rollout.png``: ``traild report --html`` on the generated
  trades of ``tests/reporting/sample_page.py``, photographed by headless Chromium at 1280 px
  (``apt-get install -y chromium``);
* ``backtest-equity.png``, ``backtest-difference.png``: ``traild backtest --bars`` charts over
  three real M1 bar files a year apart (``../shared/data/fx`` or ``$SHARED_FX_DATA``), 600
  random entries, dynamic trailing on.

The PNGs are scaled down and reduced to a palette to stay small.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

from PIL import Image, ImageChops

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import shared_data_path  # noqa: E402
from tests.reporting.chromium import screenshot  # noqa: E402
from tests.reporting.sample_page import sample_page  # noqa: E402
from traild.cli import main  # noqa: E402

DOCS = ROOT / "docs"
BAR_FILES = (  # three pairs, a year apart: the equity chart's periods
    "GBPUSD_fxcm_m1_bid_2012-02.csv.gz",
    "USDJPY_fxcm_m1_bid_2013-02.csv.gz",
    "EURUSD_oanda_m1_bid_2014-05-01_2014-05-15.csv.gz",
)


def _only(page: str, *sections: str) -> str:
    """``page`` with only the header and the given sections."""
    head = page.partition("<section ")[0]
    kept = [m.group(0) for m in re.finditer(r'<section id="([^"]+)">.*?</section>', page, re.S)
            if m.group(1) in sections]  # fmt: skip
    return head + "\n".join(kept) + "</body></html>\n"


def _small(source: Path, target: Path, width: int) -> None:
    """Trimmed of the white below, scaled to ``width`` px, 64 colours."""
    image = Image.open(source).convert("RGB")
    box = ImageChops.invert(image).getbbox()
    if box:
        image = image.crop((0, 0, image.width, min(image.height, box[3] + 16)))
    if image.width > width:
        image = image.resize((width, round(image.height * width / image.width)), Image.LANCZOS)
    image.quantize(colors=64, method=Image.Quantize.MEDIANCUT).save(target, optimize=True)


def report_shots(tmp: Path) -> None:
    page = sample_page()
    for name, sections in (("outcomes", ("outcomes", "equity")), ("rollout", ("rollout",))):
        raw = tmp / f"{name}.png"
        screenshot(_only(page, *sections), raw, width=1280, height=1400)
        _small(raw, DOCS / f"report-{name}.png", 960)


def backtest_shots(tmp: Path) -> None:
    bars = shared_data_path() / "bars_m1"
    files = [bars / name for name in BAR_FILES]
    missing = [f for f in files if not f.is_file()]
    if missing:
        sys.exit(f"needs the real FX data ({missing[0]}): set SHARED_FX_DATA")
    config = tmp / "dynamic.toml"
    config.write_text("[trailing]\nenable_dynamic_trailing = true\n")
    out = tmp / "bt"
    args = ["backtest", "--bars", *map(str, files), "--random", "600", "--seed", "7"]
    assert main([*args, "--out", str(out), "--config", str(config), "--jobs", "1"]) == 0
    _small(out / "equity.png", DOCS / "backtest-equity.png", 800)
    _small(out / "dynamic_minus_fixed.png", DOCS / "backtest-difference.png", 800)


if __name__ == "__main__":
    with tempfile.TemporaryDirectory(prefix="traild-docs-") as folder:
        report_shots(Path(folder))
        backtest_shots(Path(folder))
    for path in sorted(DOCS.glob("*.png")):
        print(f"{path.relative_to(ROOT)}: {path.stat().st_size:,} bytes")
