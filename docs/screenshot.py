"""Re-take docs/report.png: the demo's report as headless Chromium shows it.

    make demo && make browser && .venv/bin/python docs/screenshot.py [results/demo/report.html]
"""

from __future__ import annotations

import sys
from pathlib import Path

from synque_ray.report.browser import Browser

DOCS = Path(__file__).resolve().parent


def main() -> None:
    page = Path(sys.argv[1] if len(sys.argv) > 1 else "results/demo/report.html")
    if not page.is_file():
        raise SystemExit(f"error: {page}: not found; run `make demo` first")
    with Browser(width=1200, height=2000) as browser:  # the verdict, the ranking and the score panels
        session, visit = browser.open(page)
        if visit.console_errors:
            raise SystemExit(f"error: {page}: console errors: {visit.console_errors}")
        target = browser.screenshot(session, DOCS / "report.png")
    print(f"written: {target}")


if __name__ == "__main__":
    main()
