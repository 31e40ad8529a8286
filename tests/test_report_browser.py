"""The report as a person sees it: the real run's page in a real headless Chromium
(`make browser` installs Debian's `chromium`; `make test` depends on it)."""

import pytest

from synque_ray.report.browser import Browser, chromium_path

pytestmark = pytest.mark.ray

ROWS = "document.querySelectorAll('#ranking-table tbody tr')"


@pytest.fixture(scope="module")
def browser():
    if chromium_path() is None:
        pytest.fail("chromium is not installed: run `make browser` (make test does)")
    with Browser() as opened:
        yield opened


@pytest.fixture(scope="module")
def page(browser, scored_run):
    return browser.open(scored_run.output / "report.html")


def test_one_ranking_row_per_candidate_no_errors_no_network(browser, page, scored_run, tmp_path):
    session, visit = page
    assert browser.evaluate(session, f"{ROWS}.length") == len(scored_run.quality)
    assert visit.console_errors == []
    assert visit.requests[0] == visit.url  # the file itself ...
    assert [r for r in visit.requests[1:] if not r.startswith("data:")] == []  # ... and its own embedded figures
    assert browser.evaluate(session, "document.images.length") > len(scored_run.quality)  # projections drawn
    assert browser.evaluate(session, "Array.from(document.images).every(i => i.complete && i.naturalWidth > 0)")
    shot = browser.screenshot(session, tmp_path / "report.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_clicking_a_header_sorts_the_ranking(browser, page):
    session, _ = page
    names = f"Array.from({ROWS}).map(r => r.cells[0].getAttribute('data-v'))"
    before = browser.evaluate(session, names)
    browser.evaluate(session, "document.querySelector('#ranking-table th').click()")
    assert browser.evaluate(session, names) == sorted(before)
    browser.evaluate(session, "document.querySelector('#ranking-table th').click()")
    assert browser.evaluate(session, names) == sorted(before, reverse=True)
    ensemble = "Array.from(document.querySelectorAll('#ranking-table th')).find(h => h.textContent == 'ensemble')"
    browser.evaluate(session, f"{ensemble}.click()")
    ranks = browser.evaluate(session, f"Array.from({ROWS}).map(r => Number(r.cells[5].getAttribute('data-v')))")
    assert ranks == sorted(ranks) and ranks[0] == 1


def test_a_candidate_link_leads_to_its_section(browser, page):
    session, _ = page
    target = browser.evaluate(session, f"{ROWS}[0].querySelector('a').getAttribute('href')")
    assert browser.evaluate(session, f"document.querySelector('{target}') !== null")
    assert browser.evaluate(session, f"document.querySelector('{target} img') !== null")  # its projection
