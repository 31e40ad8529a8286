"""The kinds of data LENS has prompts for (`lens.task`): per family, what one row is and which
aspects are worth comparing between real and synthetic rows.

The config checks `lens.task` against these names and LENS's prompts (synque_ray.lens.prompts)
are built from the texts, so both read this one list: a new family is one entry here. It sits
below the config and LENS alike (it imports nothing of the package). Its texts are part of the
prompts: change `lens.prompts.PROMPT_VERSION` when any wording here changes.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    row_kind: str  # what one row is, as a noun phrase
    rows_kind: str
    aspects: str  # what to compare, as a list in prose


FAMILIES: dict[str, Family] = {
    "sentiment": Family(
        row_kind="a short text to be classified by sentiment (for example a financial news headline)",
        rows_kind="short texts for sentiment classification",
        aspects=(
            "topics and entities mentioned, how positive or negative the tone is and how clearly, "
            "length, use of numbers and figures, vocabulary and jargon, grammar and punctuation, "
            "and how varied or repetitive the rows are"
        ),
    ),
    "text2sql": Family(
        row_kind="a natural-language question about a database, sometimes with a hint on how to answer it",
        rows_kind="questions asked of a database",
        aspects=(
            "which tables, columns and values the questions refer to, how many steps of reasoning "
            "(filters, joins, aggregates, ordering) an answer needs, how hints are phrased, "
            "ambiguity, wording and length"
        ),
    ),
    "web": Family(
        row_kind=(
            "one step of a web-browsing task: the task the user wants done and the current state of "
            "the page (its text, links, buttons and form fields)"
        ),
        rows_kind="web-browsing task steps, each a task plus a page state",
        aspects=(
            "what kinds of tasks are asked, how specific they are, what kinds of sites and pages appear, "
            "how pages are structured and how their elements are named, how much irrelevant content the "
            "page holds, and how long and noisy the page text is"
        ),
    ),
    "generic": Family(
        row_kind="one row of a text dataset",
        rows_kind="text rows",
        aspects="topics, structure, length, style and wording, the level of detail, and how varied the rows are",
    ),
}
