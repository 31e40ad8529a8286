"""This team's prompt templates for LENS, one family per kind of data.

A family says what a row is and which aspects are worth comparing; the same three
rubric prompts and one judging prompt are built from it. Judging prompts are laid
out so that everything that depends only on the rubric comes first (the prefix that
vLLM's prefix cache shares between rows), then the row, then the one line that
names the dataset being asked about, so the two questions about a row share the
row too.

PROMPT_VERSION is part of every cache key: change it when any wording changes, the families'
(synque_ray.lens_families) included.
"""

from __future__ import annotations

from synque_ray.lens_families import FAMILIES, Family

PROMPT_VERSION = "lens-prompts-1"

LABELS = ("very unlikely", "unlikely", "unsure", "likely", "very likely")  # 0..4
ANSWERS = tuple(str(i) for i in range(len(LABELS)))


SYSTEM_WRITER = (
    "You are a careful data analyst. You compare two samples of a dataset and report what you see "
    "as short, concrete, checkable statements. You reply with JSON only."
)
SYSTEM_JUDGE = "You are a careful data analyst who decides where a single data row most likely came from."


def _numbered(rows: list[str]) -> str:
    return "\n".join(f"{i}. {row}" for i, row in enumerate(rows, start=1))


def _bullets(points: list[str]) -> str:
    return "\n".join(f"- {point}" for point in points)


def _samples(family: Family, real_rows: list[str], synthetic_rows: list[str]) -> str:
    return (
        f"Each row below is {family.row_kind}.\n\n"
        f"SAMPLE R: {len(real_rows)} rows of the REAL data\n{_numbered(real_rows)}\n\n"
        f"SAMPLE S: {len(synthetic_rows)} rows of a SYNTHETIC dataset made by a generator model\n"
        f"{_numbered(synthetic_rows)}\n\n"
    )


def _reply_format(n: int) -> str:
    return (
        f"Reply with a JSON list of exactly {n} strings, one statement per string, "
        'like ["statement one", "statement two"], and nothing else.'
    )


def commonalities_prompt(task: str, real_rows: list[str], synthetic_rows: list[str], n: int) -> list[dict]:
    family = FAMILIES[task]
    body = (
        _samples(family, real_rows, synthetic_rows)
        + f"Write {n} properties that the rows of SAMPLE R and SAMPLE S have in common. "
        f"Consider {family.aspects}. "
        + _reply_format(n)
    )
    return [{"role": "system", "content": SYSTEM_WRITER}, {"role": "user", "content": body}]


def differences_prompt(
    task: str, real_rows: list[str], synthetic_rows: list[str], common: list[str], n: int, real_first: bool
) -> list[dict]:
    """real_first: C_{r,s} (how real rows differ from synthetic); else C_{s,r}."""
    family = FAMILIES[task]
    this, other = ("SAMPLE R", "SAMPLE S") if real_first else ("SAMPLE S", "SAMPLE R")
    body = (
        _samples(family, real_rows, synthetic_rows)
        + f"Both samples share these properties:\n{_bullets(common)}\n\n"
        f"Now write {n} ways in which the rows of {this} differ from the rows of {other}: properties that "
        f"are typical of {this} and rare or missing in {other}. Consider {family.aspects}. "
        "Do not repeat the shared properties. "
        + _reply_format(n)
    )
    return [{"role": "system", "content": SYSTEM_WRITER}, {"role": "user", "content": body}]


def judge_prefix(task: str, common: list[str], differences: list[str], real_first: bool) -> str:
    """The rubric part of a judging prompt: identical for every row of one (candidate, seed, D)."""
    family = FAMILIES[task]
    heading = (
        "What sets REAL rows apart from SYNTHETIC rows"
        if real_first
        else "What sets SYNTHETIC rows apart from REAL rows"
    )
    return (
        f"There are two datasets of {family.rows_kind}: a REAL dataset, and a SYNTHETIC dataset "
        "written by a generator model to imitate it.\n\n"
        f"Properties both datasets share:\n{_bullets(common)}\n\n"
        f"{heading}:\n{_bullets(differences)}\n\n"
        "Read the row below and use the lists above to judge where it comes from.\n\n"
        "ROW:\n"
    )


def judge_question(label: str) -> str:
    """The part after the row; `label` is 'real' or 'synthetic'."""
    name = "REAL" if label == "real" else "SYNTHETIC"
    scale = ", ".join(f"{i} = {text}" for i, text in enumerate(LABELS))
    return (
        f"\n\nHow likely is it that this row comes from the {name} dataset? "
        f"Answer with one digit ({scale})."
    )


def judge_messages(prefix: str, row: str, label: str) -> list[dict]:
    return [
        {"role": "system", "content": SYSTEM_JUDGE},
        {"role": "user", "content": prefix + row + judge_question(label)},
    ]


def parse_judgement(text: str) -> int | None:
    """0..4 from an answer: a digit, or one of the five labels; None when neither is there."""
    cleaned = text.strip().strip("\"'`*.").lower()
    if not cleaned:
        return None
    if cleaned[0] in "01234" and (len(cleaned) == 1 or not cleaned[1].isdigit()):
        return int(cleaned[0])
    for value in (0, 4, 1, 3, 2):  # the longer labels first: "very unlikely" contains "unlikely"
        if cleaned.startswith(LABELS[value]):
            return value
    return None
