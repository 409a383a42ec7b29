"""The run report in a real headless Chromium (Debian ``chromium``; ``make browser``): no
console errors, and a screenshot that is not blank.

Without Chromium the tests skip, except under CI (``CI`` set, as CI services do), where a
missing browser is a failure: CI must not pass by skipping the only rendering check.
Set ``REPORT_SCREENSHOT_DIR`` to keep the screenshot (CI uploads it as an artifact).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from granvit_pipeline.reporting.browser import find_chromium, open_page
from granvit_pipeline.reporting.curves import stage_lineage
from granvit_pipeline.reporting.html import render_report

pytestmark = pytest.mark.slow


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture
def chromium() -> str:
    binary = find_chromium()
    if binary is None:
        message = "Chromium not installed (`make browser` installs Debian's chromium)"
        if _in_ci():
            pytest.fail(f"{message}; CI is set, so the browser check may not be skipped")
        pytest.skip(message)
    return binary


def _keep(png: Path) -> None:
    target = os.environ.get("REPORT_SCREENSHOT_DIR")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copy(png, Path(target) / png.name)


def test_report_renders_without_console_errors(
    chromium: str, tmp_path: Path, evaluation_report: dict[str, Any], lineage: Path,
    examples: dict, ablation_table: dict,
) -> None:  # fmt: skip
    page = tmp_path / "run_report.html"
    page.write_text(
        render_report(evaluation_report, stage_lineage(lineage), examples, ablation_table),
        encoding="utf-8",
    )
    result = open_page(page, binary=chromium)
    assert result.console_errors == [], result.console_messages
    png = tmp_path / "run_report.png"
    png.write_bytes(result.screenshot)
    _keep(png)
    with Image.open(png) as shot:
        assert shot.format == "PNG" and shot.size == (1280, 2000)
        colours = shot.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is None or len(colours) > 10  # text, curves, example images: not blank


def test_console_errors_are_caught(chromium: str, tmp_path: Path) -> None:
    """The check is not vacuous: a page with errors reports them."""
    page = tmp_path / "broken.html"
    page.write_text(
        "<!DOCTYPE html><html><body><p>x</p><script>console.error('boom');"
        "missing();</script><img src='nope.png'></body></html>"
    )
    errors = open_page(page, binary=chromium).console_errors
    assert any("boom" in e for e in errors)
    assert any(e.startswith("Uncaught ReferenceError") for e in errors)
    assert any("nope.png" in e for e in errors)


def test_ci_without_chromium_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """The skip rule itself: CI set + no browser -> failure, not skip."""
    monkeypatch.setenv("GRANVIT_CHROMIUM", "definitely-not-a-browser")
    assert find_chromium() is None
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="may not be skipped"):
        chromium.__wrapped__()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="make browser"):
        chromium.__wrapped__()
