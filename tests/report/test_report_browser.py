"""The report as a person sees it: the real run's page in a real headless Chromium
(`make browser` installs Debian's `chromium`; `make test` depends on it)."""

import json
import re
import shutil
from pathlib import Path

import pytest

from synque_ray.report import write_report
from synque_ray.report.load import load_run
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
    assert browser.evaluate(session, "document.images.length") == len(scored_run.quality)  # projections drawn
    assert browser.evaluate(session, "document.querySelectorAll('svg.scores, svg.evaluation').length") == 2
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


NAMES = ("Array.from(document.querySelectorAll('svg.scores')).map(s => "
         "Array.from(s.querySelectorAll('[id*=\"-candidate-\"] text')).map(t => t.textContent))")


def _ranking_order(browser, session) -> list[str]:
    """The ranking table's candidates by their ensemble rank (whatever order a click left the table in)."""
    column = "Array.from(document.querySelectorAll('#ranking-table th')).findIndex(h => h.textContent == 'ensemble')"
    pairs = browser.evaluate(session, f"(() => {{ const k = {column}; return Array.from({ROWS}).map(r => "
                                      "[Number(r.cells[k].getAttribute('data-v')), r.cells[0].getAttribute('data-v')])"
                                      " })()")
    return [name for _, name in sorted(pairs)]


def test_score_plots_say_what_they_measure_in_one_order_at_a_readable_size(browser, page):
    session, _ = page
    figures = browser.evaluate(session, NAMES)
    assert figures and all(names == _ranking_order(browser, session) for names in figures)  # one order, best first
    labels = browser.evaluate(session, "Array.from(document.querySelectorAll('svg.scores text')).map(t => "
                                       "t.textContent)")
    for said in ("MMD²", "PAD", "MDM", "MAUVE", "mean rank over proxies"):
        assert said in labels, said
    assert labels.count("(lower is better)") == 3 and labels.count("(higher is better)") == 2
    ensemble = browser.evaluate(session, "Array.from(document.querySelectorAll('svg.scores g#scores-ensemble "
                                         "[id^=xtick] text')).map(t => t.textContent)")
    assert ensemble and not any(t.startswith(("−", "-")) for t in ensemble)  # a mean rank, not its negation
    heights = browser.evaluate(session, "Array.from(document.querySelectorAll("
                                        "'svg.scores [id*=\"-candidate-\"] text')).map(t => "
                                        "t.getBoundingClientRect().height)")
    assert heights and min(heights) >= 11  # names in px as the page shows them


def test_evaluation_plots_name_the_metric_and_their_ticks_never_touch(browser, page):
    session, _ = page
    texts = browser.evaluate(session, "Array.from(document.querySelectorAll('svg.evaluation text')).map(t => "
                                      "t.textContent)")
    assert "quality" in texts  # the --metric the performance was measured in
    panels = browser.evaluate(session, "Array.from(document.querySelectorAll('svg.evaluation g[id^=evaluation-]'))"
                              ".map(g => ({texts: Array.from(g.querySelectorAll('text')).map(t => t.textContent), "
                              "ticks: Array.from(g.querySelectorAll('[id^=xtick] text')).map(t => {"
                              "const r = t.getBoundingClientRect(); return [r.left, r.right]; })}))")
    assert len(panels) == 5
    for panel in panels:
        assert any(t.endswith("is better)") for t in panel["texts"])
        spans = sorted(panel["ticks"])
        assert len(spans) >= 2 and all(a[1] + 2 <= b[0] for a, b in zip(spans, spans[1:]))


def test_no_table_cell_is_left_empty(browser, page):
    session, _ = page
    empty = browser.evaluate(session, "Array.from(document.querySelectorAll('td')).filter(td => "
                                      "td.textContent.trim() === '').map(td => td.closest('table').id || td.outerHTML)")
    assert empty == []
    assert browser.evaluate(session, "Array.from(document.querySelectorAll('td')).some(td => "
                                     "td.textContent === 'none')")  # a row without a near-duplicate says so


def test_agreement_colours_span_the_values_shown(browser, page):
    session, _ = page
    cells = browser.evaluate(session, "Array.from(document.querySelectorAll('#agreement-table td[style]')).map(td => "
                                      "[Number(td.textContent), getComputedStyle(td).backgroundColor])")
    key = browser.evaluate(session, "Array.from(document.querySelectorAll('#agreement-scale span')).map(s => "
                                    "[Number(s.textContent), getComputedStyle(s).backgroundColor])")
    values = [v for v, _ in cells]
    assert key[0][0] == pytest.approx(min(values), abs=0.005) and key[-1][0] == pytest.approx(max(values), abs=0.005)
    colour = dict(key)
    assert all(background == colour[round(v, 2)] for v, background in cells if round(v, 2) in colour)


def test_history_shows_dates_and_projections_are_large(browser, page):
    session, _ = page
    headers = browser.evaluate(session, "Array.from(document.querySelectorAll('#history-table th')).map(h => "
                                        "h.textContent)")
    assert len(headers) == 4 and all(re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", h) for h in headers[1:3])
    widths = browser.evaluate(session, "Array.from(document.querySelectorAll('.candidate .figure img')).map(i => "
                                        "[i.naturalWidth, i.getBoundingClientRect().width])")
    assert widths and all(natural >= 400 and shown >= 400 for natural, shown in widths)
    beside = browser.evaluate(session, "Array.from(document.querySelectorAll('.candidate')).map(c => { "
                                       "const f = c.querySelector('.figure').getBoundingClientRect(), "
                                       "t = c.querySelector('table.facts').getBoundingClientRect(); "
                                       "return t.left >= f.right && t.top < f.bottom; })")
    assert beside and all(beside)  # every candidate's facts beside its picture, none wrapped below it


def test_a_stale_evaluation_is_flagged_above_its_table(browser, scored_run, tmp_path):
    out = tmp_path / "stale"
    shutil.copytree(scored_run.output, out)
    published = Path(load_run(str(out)).folder)  # the set LATEST names: the report reads its evaluation.json
    evaluation = json.loads((published / "evaluation.json").read_text())
    (published / "evaluation.json").write_text(json.dumps({**evaluation, "run": "20200101T000000000000Z"}))
    target = write_report(str(out))[0]
    session, _ = browser.open(Path(target))
    top = "document.querySelector('{}').getBoundingClientRect().top"
    warning = browser.evaluate(session, "document.querySelector('#evaluation-stale').textContent")
    assert "evaluated run 20200101T000000000000Z, not this one" in warning
    assert browser.evaluate(session, top.format("#evaluation-stale")) < browser.evaluate(
        session, top.format("#evaluation-table"))


def test_at_800_px_wide_the_page_never_scrolls_sideways_and_plot_labels_keep_their_size(browser, scored_run):
    session, _ = browser.open(scored_run.output / "report.html")
    browser.call("Emulation.setDeviceMetricsOverride", session, width=800, height=900, deviceScaleFactor=1,
                 mobile=False)
    assert browser.evaluate(session, "window.innerWidth") == 800
    assert browser.evaluate(session, "document.documentElement.scrollWidth") <= 800  # the page: no sideways
    # The ranking table scrolls in its own box, every column reachable, the names staying in view.
    box = "document.querySelector('#ranking-table').parentElement"
    assert browser.evaluate(session, f"{box}.scrollWidth >= document.querySelector('#ranking-table').offsetWidth")
    browser.evaluate(session, f"{box}.scrollLeft = {box}.scrollWidth")
    edges = browser.evaluate(session, "(() => { const row = document.querySelector('#ranking-table tbody tr'); "
                                      "const r = e => e.getBoundingClientRect(); return [r(row.cells[0]).left, "
                                      f"r(row.cells[row.cells.length - 1]).right, r({box}).left, "
                                      f"r({box}).right]; }})()")
    first_left, last_right, box_left, box_right = edges
    assert first_left == pytest.approx(box_left, abs=1) and last_right <= box_right + 1
    heights = browser.evaluate(session, "Array.from(document.querySelectorAll("
                                        "'svg.scores [id*=\"-candidate-\"] text, svg.evaluation text')).map(t => "
                                        "t.getBoundingClientRect().height)")
    assert heights and min(heights) >= 11  # candidate names and the evaluation's labels, in px as shown
