"""The legend: what every proxy, column and finding means, which way is better, when to trust it.

The one source of the legend: the report's `<dl>` and `synque explain` both read it. Pure
text built from the limits and names the findings declare.
"""

from __future__ import annotations

import textwrap

from synque_ray.config import PROXY_ABOUTS
from synque_ray.findings import DEMOTED, LEAKS, LIMITS, SHARE_NAMES, SHORT_CHARS, SYNTHETIC_P, percent
from synque_ray.proxies.base import About
from synque_ray.rowsignals import DUPLICATE_COSINE

# What each proxy is, declared beside it (the embedding proxies in their `Proxy`, the proxies of a
# stage of their own in their module's `ABOUT`) and collected from the stages' config sections, in
# the order the stages run; the ensemble is the one entry written here.
ABOUTS: tuple[About, ...] = PROXY_ABOUTS
PROXY_TITLES: dict[str, str] = {about.name: about.title for about in ABOUTS} | {"ensemble": "mean rank over proxies"}

# One entry per proxy and the ensemble: what it measures, which way is better, when to trust it.
PROXY_LEGEND: dict[str, str] = {about.name: about.legend for about in ABOUTS} | {
    "ensemble": "The candidate's weighted mean rank over the proxies, per seed; lower mean rank is better. By "
                "default (ranking.ensemble: decorrelated) the proxies that order the candidates against or "
                "unrelated to the others get no weight, and a block of proxies that move together (several on "
                "one embedding model share its blind spots) counts about as one; `robust` weighs each proxy by "
                "how well it agrees with the others; `mean` weighs all the same. The "
                "weights are in run.json (ensemble). Its score_mean is the negated mean rank (−1 would be first "
                "everywhere) and its raw the mean rank itself. Only candidates with every proxy are in it. A "
                "screen (fluency) is never in it: its finding passes a candidate over instead.",
}

# The columns and words of the ranking table, the findings and the verdict.
TERM_LEGEND: dict[str, str] = {
    "U_r": "The sample of unannotated real inputs the candidates are compared with, one draw per seed.",
    "score": "The proxy's value oriented so that higher always means a better predicted candidate (−MMD², "
             "−PAD, −perplexity, −mean rank); score_mean and score_std are its mean and spread over seeds.",
    "raw": "The proxy's value as its paper defines it, before orientation (MMD², PAD, perplexity, the "
           "ensemble's mean rank).",
    "rank": "1 = best, within one proxy, by score_mean.",
    "rank_low–high": "The range of ranks the candidate takes when its rows and the seeds are resampled "
                     "(ranking.level of the draws fall inside it): a wide range means the data cannot place it.",
    "best set": "The candidates that cannot be told apart from the best at ranking.level (tied_with_best): "
                "pick among them on other grounds, or add U_r rows or seeds to separate them.",
    "p_best / p_top": "The share of resampled draws in which the candidate ranks first / within the top "
                      "ranking.top.",
    "duplicate_share": "Rows that repeat an earlier row of the candidate nearly word for word (cosine of "
                       f"embeddings ≥ {DUPLICATE_COSINE:g}): each near-duplicate group counts beyond its first row.",
    "real_copy_share": "Rows that copy a U_r row exactly or nearly: they flatter every proxy that compares "
                       "with U_r, and leak the real sample into training.",
    "eval_copy_share": "Rows that copy a row of the contamination (evaluation) set exactly or nearly: training "
                       "on them leaks the set a model will be measured on, so any such row flags the candidate "
                       "(– when the job names no contamination set).",
    "synthetic_share": "Rows PAD's classifier finds more likely synthetic than real (balanced p_synthetic > "
                       f"{SYNTHETIC_P:g}); about half for a candidate indistinguishable from U_r.",
    "short_share": f"Rows shorter than {SHORT_CHARS} characters, empty rows included.",
    "garbled_share": "Rows the fluency screen judged garbled: shuffled (their order gain, how much less likely a "
                     "small LM finds the row's words shuffled than as written, is low), misspelt (its surprise "
                     "inside words is high) or cut mid-sentence (its surprise that the text ends there is high), "
                     "each beyond U_r's own percentile of it (flagged above "
                     f"{LIMITS['garbled_share']:.0%}, which passes the candidate over and ranks it last).",
    "garbled_as": "What the garbled rows showed, each cause with its share of the judged rows (a row may show "
                  "several): shuffled, misspelt, cut mid-sentence. It names the problem; garbled_share flags.",
    "proxy_disagreement": "The proxy that ranks the candidate furthest from the ensemble, and by how many "
                          "ranks: a reason to read that proxy's entry. Proxies measure different things, so "
                          "a disagreement alone never flags a candidate.",
    "identical_to": "The other candidates whose texts are the same (a copied file, or a BOM, CRLF or id-mapping "
                    "variant of one): scored once and ranked under each name, so they tie. Never a flag.",
    "flagged": "A candidate with a finding over its limit (" + ", ".join(
        f"{SHARE_NAMES.get(name, name)} > {percent(limit)}" for name, limit in LIMITS.items()) + ").",
    "passed over": "A candidate left out of the best set and never named on `train on:`. One whose rows copy "
        "the real sample (" + ", ".join(SHARE_NAMES.get(name, name) for name in LEAKS) + ", over the limit) "
        "keeps its rank in every table: it looks closest to the real data because it holds it, and training "
        "on it leaks the rows a model is later judged on. One whose rows read as garbled (" + ", ".join(
        SHARE_NAMES.get(name, name) for name in DEMOTED) + ", over the limit) ranks after every other "
        "candidate in the lead ranking, since the proxies of the ensemble barely see what is wrong with it; "
        "each proxy's own rank of it is kept.",
}

LEGEND: dict[str, str] = {**PROXY_LEGEND, **TERM_LEGEND}


def legend_text(width: int = 100) -> str:
    """The legend for a terminal: a term, then its sentence indented under it."""
    lines = []
    for title, entries in (("proxies", PROXY_LEGEND), ("terms", TERM_LEGEND)):
        lines.append(f"{title}:")
        for name, text in entries.items():
            lines.append(f"  {name}")
            lines.extend(textwrap.wrap(text, width, initial_indent="      ", subsequent_indent="      "))
    return "\n".join(lines)
