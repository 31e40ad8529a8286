"""The embedded default: demo data whose quality is graded by construction.

A small grammar writes financial-news-style headlines. The real pool uses all of
it. Candidate i is degraded by a level d_i in [0, 0.9], applied three ways at once:
a fraction d/2 of rows is off-topic, a fraction d/2 collapses onto near-duplicates
of three rows, and the vocabulary of every on-topic row shrinks to a (1 - d) share. The known
quality order is therefore d ascending, and a good proxy should recover it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

COMPANIES = [
    "Northwind Energy", "Bluepeak Systems", "Harbor Freight Lines", "Crescent Pharma", "Ironleaf Mining",
    "Solace Health", "Vantage Semiconductors", "Redwood Bancorp", "Atlas Retail", "Pinecrest Foods",
    "Quantum Logistics", "Silverline Airlines", "Meridian Insurance", "Oakridge Motors", "Lumen Telecom",
    "Granite Steel", "Coral Biotech", "Summit Software", "Trident Shipping", "Evergreen Utilities",
    "Falcon Aerospace", "Horizon Media", "Keystone Chemicals", "Maple Capital", "Nova Robotics",
    "Beacon Foods", "Cobalt Networks", "Delta Ridge Oil", "Echo Devices", "Fairway Hotels", "Glacier Water",
    "Hollow Pine Timber", "Indigo Apparel", "Juniper Payments", "Kestrel Drones", "Larkspur Cosmetics",
    "Mosaic Games", "Nimbus Cloud", "Orchid Pharmacies", "Prairie Rail",
]
# When or where a headline's news happened: every template ends with one, so that two headlines of one
# template share all their words but one only by a rare chance (a real pool and a clean candidate from
# this grammar should not look like copies of each other).
WHEN = [
    "on Monday", "on Tuesday", "on Wednesday", "on Thursday", "on Friday", "in early trading", "in late trading",
    "after the bell", "before the open", "in Asian trading", "in European trading", "this week", "this morning",
    "at midday", "ahead of earnings", "amid heavy volume", "in a choppy session", "despite a weak market",
    "as futures edge higher", "for a third day", "in a broad selloff", "to a yearly high", "to a yearly low",
    "after a volatile week",
]
EVENTS = [
    "a strong quarterly report", "weak guidance", "a surprise CEO exit", "an analyst downgrade",
    "an analyst upgrade", "a product recall", "record holiday sales", "a regulatory probe",
    "a dividend increase", "a cyberattack", "a new supply deal", "a patent win", "layoff plans",
    "a credit rating cut", "a share buyback", "lower fuel costs", "a factory fire", "a merger rumor",
]
MACRO = [
    "inflation cools", "the Fed holds rates", "bond yields climb", "oil prices slide", "the dollar weakens",
    "jobless claims rise", "consumer confidence dips", "China data disappoints", "retail sales beat forecasts",
    "housing starts slump", "the euro rallies", "gold hits a record", "factory orders rebound",
    "copper prices jump", "the yen strengthens", "wage growth slows", "treasury auctions disappoint",
    "German output shrinks", "shipping rates soar", "crop prices tumble",
]
SECTORS = ["Tech", "Bank", "Energy", "Airline", "Retail", "Chip", "Pharma", "Auto", "Shipping", "Insurance",
           "Utility", "Mining", "Media", "Biotech", "Steel", "Telecom", "Gaming", "Hotel", "Railroad", "Software"]
UP = ["jump", "rise", "climb", "surge", "gain", "rally", "advance"]
DOWN = ["fall", "drop", "slide", "sink", "tumble", "slip", "retreat"]
TEMPLATES = [
    "{company} shares {move} {pct}% after {event} {when}",
    "{company} to buy {other} in ${amount} billion deal, shares {move} {when}",
    "{sector} stocks {move} as {macro} {when}",
    "{company} posts {event}, stock {move}s {pct}% {when}",
    "Analysts weigh {company} outlook after {event} {when}",
    "{company} cuts {amount}00 jobs amid {event}, {sector} peers {move} {when}",
    "Markets {move} as {macro}; {company} in focus {when}",
    "{company} Q{quarter} revenue ${amount}.{pct} billion, beats estimates; shares {move} {when}",
    "{company} misses Q{quarter} profit forecast on {event}, {sector} shares {move} {when}",
    "Why {company} stock could {move} after {event} {when}",
    "{sector} ETF {move}s on record inflows as {macro} {when}",
    "{company} and {other} announce joint venture, {sector} stocks {move} {when}",
]
OFF_TOPIC = [
    "Whisk {amount} eggs with a pinch of salt and bake for {pct} minutes",
    "Local team wins {amount}-{quarter} in a rainy derby",
    "Ten tips for a calmer morning routine",
    "Heavy snow expected across the hills this weekend",
]


def _headline(rng: np.random.Generator, share: float) -> str:
    """One headline from the grammar, each word list cut to its first `share`."""

    def pick(words: list[str]) -> str:
        return words[rng.integers(max(1, round(len(words) * share)))]

    template = pick(TEMPLATES)
    return template.format(
        company=pick(COMPANIES), other=pick(COMPANIES[::-1]), event=pick(EVENTS), macro=pick(MACRO),
        sector=pick(SECTORS), move=pick(UP if rng.random() < 0.5 else DOWN), pct=rng.integers(1, 30),
        amount=rng.integers(2, 40), quarter=rng.integers(1, 5), when=pick(WHEN),
    )


def candidate_rows(level: float, size: int, rng: np.random.Generator) -> list[str]:
    n_off = round(size * level / 2)
    n_dup = round(size * level / 2)
    rows = [_headline(rng, 1.0 - level) for _ in range(size - n_off - n_dup)]
    anchors = [_headline(rng, 1.0 - level) for _ in range(3)]
    for _ in range(n_dup):
        words = anchors[rng.integers(3)].split()
        words[rng.integers(len(words))] = str(rng.integers(1, 99))  # a near-duplicate: one token changed
        rows.append(" ".join(words))
    for _ in range(n_off):
        template = OFF_TOPIC[rng.integers(len(OFF_TOPIC))]
        rows.append(template.format(amount=rng.integers(2, 9), pct=rng.integers(10, 60), quarter=rng.integers(0, 4)))
    rng.shuffle(rows)
    return rows


def write_demo_data(folder: str | Path, n_candidates: int = 12, rows: int = 300, pool_rows: int = 600,
                    seed: int = 7) -> dict[str, float]:
    """Write `real/pool.jsonl` and `candidates/*.jsonl`; return each candidate's true quality."""
    folder = Path(folder)
    (folder / "candidates").mkdir(parents=True, exist_ok=True)
    (folder / "real").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pool = [{"text": _headline(rng, 1.0), "label": "unused"} for _ in range(pool_rows)]
    _write_jsonl(folder / "real" / "pool.jsonl", pool)
    quality = {}
    for i, level in enumerate(np.linspace(0.0, 0.9, n_candidates)):
        name = f"gen{i:02d}_degraded{round(level * 100):02d}"
        texts = candidate_rows(float(level), rows, np.random.default_rng(seed * 1000 + i))
        _write_jsonl(folder / "candidates" / f"{name}.jsonl", [{"text": t} for t in texts])
        quality[name] = round(1.0 - float(level), 4)
    (folder / "quality.csv").write_text(
        "dataset_id,quality\n" + "".join(f"{k},{v}\n" for k, v in quality.items())
    )
    return quality


def _write_jsonl(path: Path, records: list[dict]) -> None:
    temporary = path.with_suffix(".tmp")
    temporary.write_text("".join(json.dumps(r) + "\n" for r in records))
    temporary.replace(path)
