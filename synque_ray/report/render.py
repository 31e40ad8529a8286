"""The report's HTML: one self-contained page (inline CSS, a few lines of inline JS, figures
as data URIs), so that it opens from a disk or an object store with no network at all."""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape
from importlib import resources

from synque_ray.findings import DEMOTED, LIMITS, SHARES, leak_flags, percent, share_detail
from synque_ray.rowschema import SIGNAL_TITLES
from synque_ray.report.view import CandidateView, RankingView
from synque_ray.verdict import level_text
from synque_ray.legend import PROXY_LEGEND, TERM_LEGEND



@dataclass
class Page:
    """Everything the page shows, already computed and drawn."""

    title: str
    meta: list[str]
    ranking: RankingView
    spread_images: list[str]  # inline SVGs, proxies side by side in one candidate order
    agreement: dict
    evaluation: dict | None
    evaluation_images: list[str]  # inline SVGs, proxies side by side sharing the performance axis
    history: dict | None
    candidates: list[tuple[CandidateView, str | None]]  # (view, projection image)
    notes: dict[str, str] = field(default_factory=dict)
    verdict: list[str] = field(default_factory=list)  # synque_ray.verdict.verdict's lines
    flagged: list[str] = field(default_factory=list)  # synque_ray.findings.flagged_lines
    level: float = 0.9  # ranking.level of the run


def _asset(name: str) -> str:
    return resources.files("synque_ray.report").joinpath("static", name).read_text(encoding="utf-8")


def _fmt(value, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _cell(text: str, sort_value="", css: str = "", title: str = "") -> str:
    attrs = f' data-v="{escape(str(sort_value))}"' + (f' class="{css}"' if css else "")
    attrs += f' title="{escape(title)}"' if title else ""
    return f"<td{attrs}>{text}</td>"


def _table(headers: list[str], rows: list[str], table_id: str = "", sortable: bool = True) -> str:
    head = "".join(f'<th class="id">{escape(h)}</th>' if k == 0 or h == "text" else f"<th>{escape(h)}</th>"
                   for k, h in enumerate(headers))
    attrs = (f' id="{table_id}"' if table_id else "") + (' class="sortable"' if sortable else "")
    return _wide(f"<table{attrs}><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


def _wide(table: str) -> str:
    """A table in a box that scrolls sideways when the window is narrower than the table, so that
    the page itself never does (its first column stays in view: report.css)."""
    return f'<div class="wide">{table}</div>'


def _note(text: str | None) -> str:
    return f'<p class="note">{escape(text)}</p>' if text else ""


def rank_cell(cell: dict | None) -> str:
    """A rank with its interval; tied-with-best ranks are bold and marked with '='."""
    if cell is None:
        return _cell("not ranked", "")
    mark = " =" if cell["tied"] else ""
    text = f'{cell["rank"]}{mark} <span class="interval">[{cell["low"]}–{cell["high"]}]</span>'
    title = f"score {_fmt(cell['mean'], 4)} ± {_fmt(cell['std'], 4)} over seeds"
    return _cell(text, cell["rank"], "tied" if cell["tied"] else "", title)


FINDING_HEADERS = {"duplicate_share": "near-duplicates", "real_copy_share": "copies of U_r",
                   "eval_copy_share": "copies of the evaluation set", "synthetic_share": "look synthetic",
                   "short_share": "short rows", "garbled_share": "garbled rows"}


def finding_cells(findings: dict | None) -> str:
    """The ranking table's findings cells: each share (– where its signal is absent), then the
    proxy that disagrees most with the ensemble; a finding over its limit is marked `flag`."""
    findings = findings or {}
    flags = findings.get("flags") or []
    cells = []
    for name in SHARES:
        value = findings.get(name)
        css, title = ("flag", f"over the {LIMITS[name]:.0%} limit") if name in flags else ("", "")
        title = "; ".join(part for part in (title, share_detail(findings, name)) if part)  # what the rows showed
        cells.append(_cell("–" if value is None else percent(value), "" if value is None else value, css, title))
    proxy, gap = findings.get("disagreeing_proxy"), findings.get("proxy_disagreement")
    text = ("–" if proxy is None else "all agree" if gap == 0 else
            f"{escape(proxy)}: {findings['disagreeing_rank']:g} ({gap:g} apart)")
    cells.append(_cell(text, "" if gap is None else gap, "flag" if "proxy_disagreement" in flags else ""))
    return "".join(cells)


def ranking_section(view: RankingView, level: float = 0.9) -> str:
    headers = ["candidate", *view.proxies, "tied with best", *FINDING_HEADERS.values(), "most disagreeing proxy"]
    rows = []
    for row in view.rows:
        lead = row["cells"].get(view.lead)
        tied = lead is not None and lead["tied"]
        cells = "".join(rank_cell(row["cells"][p]) for p in view.proxies)
        link = f'<a href="#{row["anchor"]}">{escape(row["dataset_id"])}</a>'
        flags = (row.get("findings") or {}).get("flags")
        passed = "copies U_r" if leak_flags(flags) else "garbled rows" if leak_flags(flags, DEMOTED) else ""
        best = "yes" if tied else f"passed over: {passed}" if passed else "no"
        best_cell = _cell(best, int(tied), "flag" if passed else "")
        rows.append(f"<tr>{_cell(link, row['dataset_id'], 'id')}{cells}{best_cell}"
                    f"{finding_cells(row.get('findings'))}</tr>")
    return (f'<h2 id="ranking">Ranking</h2><p>Rank 1 is best. <span class="interval">[low–high]</span> is the '
            f"{level_text(level)} interval of the rank when rows and seeds are resampled; <b>=</b> marks a candidate "
            f"that cannot be told apart from the best. Ordered by <b>{escape(view.lead)}</b>; click a header to "
            f"sort, a name to see the candidate. Hover a rank for its score. The findings columns are shares of "
            f'the candidate\'s rows; <span class="flag">marked</span> ones are over their limit (see '
            f'<a href="#legend">the legend</a>).</p>'
            + _table(headers, rows, "ranking-table"))


def verdict_section(verdict: list[str], flagged: list[str]) -> str:
    """The answer first: the verdict lines, then one line per flagged candidate."""
    if not verdict:
        return ""
    lines = "".join(f"<p>{escape(line)}</p>" for line in verdict[1:])
    items = "".join(f"<li>{escape(line.removeprefix('flagged: '))}</li>" for line in flagged)
    flags = f'<p>Flagged:</p><ul class="flagged">{items}</ul>' if items else ""
    return f'<div class="verdict" id="verdict"><p class="answer">{escape(verdict[0])}</p>{lines}{flags}</div>'


def legend_section(proxies: list[str]) -> str:
    """What each proxy of the run and each term means, from the one legend (synque_ray.verdict)."""
    entries = [(p, PROXY_LEGEND[p]) for p in proxies if p in PROXY_LEGEND] + list(TERM_LEGEND.items())
    items = "".join(f"<dt>{escape(name)}</dt><dd>{escape(text)}</dd>" for name, text in entries)
    return ('<h2 id="legend">Legend</h2><p>The same text as <code>synque explain</code>.</p>'
            f'<dl class="legend">{items}</dl>')


def spread_section(figures: list[str]) -> str:
    return ('<h2 id="scores">Scores per proxy</h2><p>One row per candidate, in the order of the ranking table '
            "(best first) in every panel. Each panel is in its proxy's own units and says which way is better; "
            "the ensemble is the candidate's mean rank over the proxies. Faint dots: one per seed (U_r sample); "
            "black: their mean ± std. Wide bars mean the seeds disagree.</p>"
            f'<div class="figures">{"".join(figures)}</div>')


AGREEMENT_LOW, AGREEMENT_HIGH = (247, 252, 245), (0, 90, 50)  # light to dark green


def shade(value: float | None, low: float, high: float) -> str:
    """A cell's colour on a scale stretched over the values shown (`low`..`high`), so that
    .66 and 1.00 look as different as they are; white text on the darker half."""
    if value is None:
        return ""
    t = 0.5 if high <= low else (value - low) / (high - low)
    rgb = ",".join(str(round(a + (b - a) * t)) for a, b in zip(AGREEMENT_LOW, AGREEMENT_HIGH, strict=True))
    return f"background: rgb({rgb})" + ("; color: #fff" if t > 0.55 else "")


def agreement_section(data: dict) -> str:
    proxies = data["proxies"]
    values = [v for row in data["spearman"] for v in row if v is not None]
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    rows = []
    for i, name in enumerate(proxies):
        cells = "".join(f'<td style="{shade(v, low, high)}" title="over {data["counts"][i][j]} candidates">'
                        f"{_fmt(v, 2)}</td>" for j, v in enumerate(data["spearman"][i]))
        rows.append(f'<tr><td class="id">{escape(name)}</td>{cells}</tr>')
    steps = [low + (high - low) * k / 4 for k in range(5)] if values else []
    scale = "".join(f'<span style="{shade(v, low, high)}">{_fmt(v, 2)}</span>' for v in steps)
    return ('<h2 id="agreement">Agreement between proxies</h2><p>Spearman correlation of the candidates\' mean '
            "scores between two proxies: near 1, they rank alike; near 0 or below, they disagree, and which one "
            "to trust is what <code>synque evaluate</code> answers. The colours span the values shown, lowest to "
            f'highest: <span class="scale" id="agreement-scale">{scale}</span></p>'
            + _table(["proxy", *proxies], rows, "agreement-table", sortable=False))


def evaluation_section(data: dict | None, images: list[str], note: str | None) -> str:
    head = '<h2 id="evaluation">Against measured performance</h2>'
    if data is None:
        return head + _note(note)
    rows = []
    for proxy, r in data["proxies"].items():
        group = r.get("top_group_size")
        holds = "" if group is None else f"{group} ({'holds' if r.get('best_in_top_group') else 'misses'} the best)"
        rows.append("<tr>" + _cell(escape(proxy), proxy, "id") + "".join(
            _cell(_fmt(r.get(k)), "" if r.get(k) is None else r[k])
            for k in ("spearman", "spearman_std", "pearson", "top_k_performance", "top_k_gain")) +
            _cell(escape(holds), group if group is not None else "") + "</tr>")
    k = data["top_k"]
    table = _table(["proxy", "spearman", "± over seeds", "pearson", f"top-{k} performance", f"top-{k} gain",
                    "top group"], rows, "evaluation-table")
    missing = "" if images else _note("evaluation.json lists no per-candidate performance (written by an older "
                                      "`synque evaluate`): re-run it to plot scores against performance")
    stale = "" if not data["stale"] else (
        f'<p class="note warning" id="evaluation-stale">evaluation.json evaluated run {escape(str(data["run"]))}, '
        "not this one: the table and plots below are that run's. Re-run <code>synque evaluate</code>.</p>")
    metric = escape(data["metric"])
    return (head + stale + f"<p>{data['n']} candidates, mean {metric} {_fmt(data['mean_performance'])}. "
            f"Top-{k}: the mean {metric} of each proxy's {k} best-scored candidates, and its gain over the "
            f"mean. Plots: each candidate's mean score against its {metric}.</p>" + table + missing
            + f'<div class="figures">{"".join(images)}</div>')


def _move(move: int | None, new: bool) -> tuple[str, int | str]:
    if new:
        return "new", ""
    if move is None:
        return "–", ""
    if move == 0:
        return "=", 0
    css = "up" if move > 0 else "down"
    return f'<span class="{css}">{"▲" if move > 0 else "▼"} {abs(move)}</span>', move


def history_section(data: dict | None, note: str | None) -> str:
    head = '<h2 id="history">History</h2>'
    if data is None:
        return head + _note(note)
    rows = []
    for row in data["rows"]:
        text, value = _move(row["move"], row["new"])
        ranks = "".join(_cell("–" if r is None else str(r), "" if r is None else r) for r in row["ranks"])
        rows.append(f"<tr>{_cell(escape(row['dataset_id']), row['dataset_id'], 'id')}{ranks}"
                    f"{_cell(text, value)}</tr>")
    headers = "".join(f'<th title="runs/{escape(stamp)}">{escape(date)}</th>'
                      for stamp, date in zip(data["stamps"], data["dates"], strict=True))
    return (head + f"<p>Each candidate's <b>{escape(data['lead'])}</b> rank in the latest runs under "
            "<code>runs/</code> (oldest first; hover a date for its folder), and its move since the run before "
            "that ranked it (▲ rose, ▼ fell), counted among the candidates both runs ranked: a candidate "
            "entering or leaving moves no one else.</p>"
            + _wide(f'<table id="history-table" class="sortable"><thead><tr><th class="id">candidate</th>{headers}'
                    f"<th>move</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"))


def _rows_table(title: str, rows: list[dict], signals: list[str]) -> str:
    body = []
    for row in rows:
        text = escape(row["text"]) if row["text"] is not None else "<i>text not available</i>"
        values = "".join(_cell(_fmt(row.get(s)), "" if row.get(s) is None else row[s]) for s in signals)
        body.append(f"<tr>{_cell(str(row['row_index']), row['row_index'])}{_cell(text, '', 'text')}{values}"
                    f"{_cell('yes' if row['duplicate'] else 'none', int(bool(row['duplicate'])))}</tr>")
    headers = ["row", "text", *[SIGNAL_TITLES.get(s, s) for s in signals], "near-duplicate"]
    return f"<h4>{escape(title)}</h4>" + _table(headers, body, sortable=False)


def _lens_part(view: CandidateView) -> str:
    if view.rubric is None and view.judgements is None:
        return ""
    parts = ["<h4>LENS</h4>"]
    if view.rubric is not None:
        for key, title in (("commonalities", "What real and synthetic share"),
                           ("real_vs_synthetic", "How real differs from synthetic"),
                           ("synthetic_vs_real", "How synthetic differs from real")):
            items = "".join(f"<li>{escape(str(p))}</li>" for p in view.rubric.get(key, []))
            parts.append(f'<p><b>{title}</b> (rubric of seed {view.rubric_seed})</p><ul class="rubric">{items}</ul>')
    if view.judgements is not None:
        rows = [f"<tr><td class=\"id\">is the row {escape(j['question'])} given {escape(j['differences'])}</td>"
                f"<td>{_fmt(j['synthetic'], 2)}</td><td>{_fmt(j['real'], 2)}</td></tr>" for j in view.judgements]
        parts.append(_table(["permutation", "candidate rows", "U_r rows"], rows, sortable=False)
                     + '<p class="meta">Mean judgement, 0 = very unlikely … 4 = very likely, over all seeds.</p>')
    return "".join(parts)


def candidate_section(view: CandidateView, image: str | None) -> str:
    """Always the same layout: the projection with the candidate's facts beside it, then its
    example rows and LENS findings below, full width."""
    cell = view.cell
    rank = "not ranked" if cell is None else (f"{cell['rank']} [{cell['low']}–{cell['high']}]"
                                              + (", cannot be told from the best" if cell["tied"] else ""))
    share = "–" if view.duplicate_share is None else ("none" if view.duplicate_share == 0
                                                      else f"{view.duplicate_share:.0%}")
    facts = [("rank", rank), ("rows scored", "–" if view.rows is None else str(view.rows)),
             ("near-duplicate rows", share)]
    table = "".join(f'<tr><th class="id">{escape(k)}</th><td class="id">{escape(v)}</td></tr>' for k, v in facts)
    figure = '<p class="no-figure">no projection</p>'
    if image:
        explained = view.projection[2] if view.projection is not None else None
        share = "" if explained is None else f" ({explained:.0%} of the variance)"
        figure = (f'<img alt="projection of {escape(view.dataset_id)}" src="{image}" width="400">'
                  f"<figcaption>Embeddings on their first two principal components{share}: "
                  '<span class="dot real"></span>U_r (real rows) <span class="dot synthetic"></span>'
                  "this candidate's rows</figcaption>")
    tables = ""
    if view.synthetic_looking:
        tables = (_rows_table("Most synthetic-looking rows", view.synthetic_looking, view.signals)
                  + _rows_table("Most real-looking rows", view.real_looking, view.signals))
    notes = "".join(_note(n) for n in view.notes)
    return (f'<section class="candidate" id="{view.anchor}"><h3>{escape(view.dataset_id)}</h3>'
            f'<div class="overview"><figure class="figure">{figure}</figure><div><table class="facts">{table}</table>'
            f"{notes}</div></div>{tables}{_lens_part(view)}</section>")


def render_page(page: Page) -> str:
    nav = "".join(f'<a href="#{a}">{t}</a>' for a, t in (
        ("ranking", "Ranking"), ("scores", "Scores"), ("agreement", "Agreement"), ("evaluation", "Evaluation"),
        ("history", "History"), ("candidates", "Candidates"), ("legend", "Legend")))
    meta = "".join(f'<p class="meta">{escape(m)}</p>' for m in page.meta)
    candidates = "".join(candidate_section(view, image) for view, image in page.candidates)
    body = (f"<h1>{escape(page.title)}</h1>{verdict_section(page.verdict, page.flagged)}{meta}<nav>{nav}</nav>"
            f"{ranking_section(page.ranking, page.level)}"
            f"{spread_section(page.spread_images)}{agreement_section(page.agreement)}"
            f"{evaluation_section(page.evaluation, page.evaluation_images, page.notes.get('evaluation'))}"
            f"{history_section(page.history, page.notes.get('history'))}"
            f'<h2 id="candidates">Candidates</h2>{_note(page.notes.get("rows"))}{_note(page.notes.get("judgements"))}'
            f"{_note(page.notes.get('files'))}{_note(page.notes.get('real'))}{candidates}"
            f"{legend_section(page.ranking.proxies)}")
    return ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; img-src data:; "
            "style-src 'unsafe-inline'; script-src 'unsafe-inline'\">"
            f"<title>{escape(page.title)}</title><style>{_asset('report.css')}</style></head>"
            f"<body>{body}<script>{_asset('report.js')}</script></body></html>")

