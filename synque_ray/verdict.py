"""The answer in words: the verdict line that opens the terminal summary and the report
(SPEC §6), and the legend of what every proxy and column means.

The verdict says which candidate to train on and how sure the engine is, and never
claims more than the best set supports: when several candidates cannot be told apart
it names them all, and it says which one merely ranked first among them.

`LEGEND` is the one source of the legend: the report's `<dl>` and `synque explain`
both read it. Pure: no Ray, no files.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import polars as pl

from synque_ray.findings import SHARE_NAMES, LEAKS, LIMITS, SHORT_CHARS, SYNTHETIC_P, percent
from synque_ray.reduce import lead_proxy, level_text
from synque_ray.rowsignals import DUPLICATE_COSINE

# One entry per proxy (every name in synque_ray.proxies.REGISTRY, lens, perplexity, ensemble):
# what it measures, which way is better, when to trust it.
PROXY_LEGEND: dict[str, str] = {
    "mdm": "Mean distance of the candidate's rows to their cluster medoid (k-medoids on the embeddings): how "
           "spread out the candidate is; higher is better. It never looks at U_r, so a varied but off-topic "
           "candidate scores well: trust it only among candidates that are all on the task.",
    "mmd": "Squared maximum mean discrepancy between the candidate's embeddings and U_r's (score = −MMD²): how "
           "far the two distributions are apart; closer to 0 is better. Noisy when U_r has few rows, and its "
           "scale depends on the kernel (mmd.kernel), so compare it only within one run.",
    "pad": "Proxy A-distance (score = −PAD): how well a classifier tells the candidate's rows from U_r's; the "
           "harder, the better. It needs tens of rows on each side, and with a small U_r its rank swings "
           "between seeds (look at the interval).",
    "mauve": "MAUVE between U_r and the candidate, from clustered embeddings: how much the two distributions "
             "overlap, 0 to 1; higher is better. It needs hundreds of rows per side to be stable.",
    "density": "How crowded U_r's neighbourhoods are with the candidate's rows (Naeem et al.'s density): "
               "fidelity to the real data; higher is better. It rewards rows packed where U_r is common, not "
               "variety: read it beside coverage.",
    "coverage": "Share of U_r rows with a candidate row among their nearest neighbours: how much of the real "
                "data the candidate reaches; higher is better, 1 at most. It says nothing of rows far from "
                "U_r: read it beside density.",
    "perplexity": "Perplexity of U_r under a small language model fine-tuned on the candidate (score = "
                  "−perplexity); lower perplexity is better. The paper's baseline: slow, and it needs enough "
                  "candidate rows to fine-tune on.",
    "fluency": "Energy distance between the candidate's and U_r's distributions of per-row token NLL under a "
               "small language model (score = −distance, in nats); closer to 0 is better. It sees what "
               "embeddings miss (shuffled words, garbled characters, rows cut short) and counts such rows "
               "in garbled_share. On CPUs it scores a sample of rows (fluency.max_rows), so read its interval.",
    "lens": "An LLM judges every row against a rubric of how real and synthetic rows differ, and LENS is the "
            "mean debiased probability that the candidate's rows are real; higher is better. Only as good as "
            "its scorer model: the bundled 135M model is for trying it out, not for decisions.",
    "ensemble": "The candidate's weighted mean rank over the proxies, per seed; lower mean rank is better. By "
                "default (ranking.ensemble: decorrelated) the proxies that order the candidates against or "
                "unrelated to the others get no weight, and a block of proxies that move together (several on "
                "one embedding model share its blind spots) counts about as one; `robust` weighs each proxy by "
                "how well it agrees with the others; `mean` weighs all the same. The "
                "weights are in run.json (ensemble). Its score_mean is the negated mean rank (−1 would be first "
                "everywhere) and its raw the mean rank itself. Only candidates with every proxy are in it.",
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
    "garbled_share": "Rows the fluency proxy scored whose token NLL is above U_r's 95th percentile: shuffled, "
                     f"garbled or cut text (about 5% of rows like U_r's; flagged above {LIMITS['garbled_share']:.0%}).",
    "proxy_disagreement": "The proxy that ranks the candidate furthest from the ensemble, and by how many "
                          "ranks: a reason to read that proxy's entry. Proxies measure different things, so "
                          "a disagreement alone never flags a candidate.",
    "identical_to": "The other candidates whose texts are the same (a copied file, or a BOM, CRLF or id-mapping "
                    "variant of one): scored once and ranked under each name, so they tie. Never a flag.",
    "flagged": "A candidate with a finding over its limit (" + ", ".join(
        f"{SHARE_NAMES.get(name, name)} > {percent(limit)}" for name, limit in LIMITS.items()) + ").",
    "passed over": "A candidate whose rows copy the real sample (" + ", ".join(
        SHARE_NAMES.get(name, name) for name in LEAKS) + ", over the limit) keeps its rank in every table "
        "but is left out of the best set and never named on `train on:`: it looks closest to the real data "
        "because it holds it, and training on it leaks the rows a model is later judged on.",
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


def _names(ids: list[str], most: int = 8) -> str:
    return ", ".join(ids) if len(ids) <= most else ", ".join(ids[:most]) + f" and {len(ids) - most} more"


def _first_under(rankings: pl.DataFrame, dataset_id: str) -> str:
    """'rank 1 under k of n proxies' for `dataset_id` (the proxies other than the ensemble)."""
    proxies = rankings.filter(pl.col("proxy") != "ensemble")
    n = proxies.get_column("proxy").n_unique()
    k = proxies.filter((pl.col("dataset_id") == dataset_id) & (pl.col("rank") == 1)).height
    return f"rank 1 under {k} of {n} {'proxy' if n == 1 else 'proxies'}"


def _behind(after: dict, first: dict, lead: str) -> str:
    """How far `after` stands behind `first` on the lead ranking: in mean ranks for the
    ensemble (its score_mean is the negated mean rank), else in the proxy's score."""
    if lead == "ensemble":
        return (f"mean rank {-after['score_mean']:.2f}, {first['score_mean'] - after['score_mean']:.2f} behind "
                f"{first['dataset_id']}'s {-first['score_mean']:.2f}")
    return (f"{lead} score {after['score_mean']:.4g}, {first['score_mean'] - after['score_mean']:.3g} below "
            f"{first['dataset_id']}'s {first['score_mean']:.4g}")


def _chance(row: dict, alone: bool) -> str:
    """The share of draws in which `row` ranked first, and, beside a best set of several, why
    that share can be high while the set still holds others."""
    p = row.get("p_best")
    if p is None:
        return ""
    if alone:
        return f"; first in {p:.0%} of draws"
    return (f"; first in {p:.0%} of resampled draws, a share of single comparisons, while the best set "
            "allows for every comparison at once and for a spread estimated from few seeds")


def leaks(rankings: pl.DataFrame) -> dict[str, list[str]]:
    """Per candidate passed over for leaking the real sample, its leak findings (from `flags`)."""
    if "flags" not in rankings.columns:
        return {}
    table = rankings.select("dataset_id", "flags").unique("dataset_id", keep="first")
    return {row["dataset_id"]: names for row in table.iter_rows(named=True)
            if (names := [f for f in row["flags"] or [] if f in LEAKS])}


def _passed_over_line(row: dict, names: list[str]) -> str:
    why = "; ".join(f"{percent(row[n])} {SHARE_NAMES.get(n, n)}, over the {percent(LIMITS[n])} limit"
                    if row.get(n) is not None else SHARE_NAMES.get(n, n) for n in names)
    return (f"passed over: {row['dataset_id']} (rank {row['rank']}): {why}; it looks close to the real data "
            "because it holds it, and training on it leaks the real sample")


@dataclass(frozen=True)
class Choice:
    """What the verdict picks from a ranking table, before it is put in words.

    lead: the ranking it reads (`lead_proxy`). best: the rows of the lead ranking named on
    `train on:` (its best set, without the candidates passed over), best first; empty only when
    nothing can be named. after: the best row outside them (`next:`), None when there is none.
    leaked: per candidate passed over, its leak findings. rows: the lead ranking's rows that may
    be named; every: all of them."""

    lead: str
    best: list[dict]
    after: dict | None
    leaked: dict[str, list[str]]
    rows: list[dict]
    every: list[dict]

    @property
    def train_on(self) -> list[str]:
        return [r["dataset_id"] for r in self.best]


def choose(rankings: pl.DataFrame) -> Choice:
    """The candidates to train on and the runner-up, from the ranking table (dataset_id, proxy,
    rank, tied_with_best; findings `flags` where present): the lead ranking's best set without
    the candidates that leak the real sample; where a table from before passed-over candidates
    existed leaves no member, the best-ranked of the others."""
    lead = lead_proxy(rankings) if rankings.height else "ensemble"
    every = rankings.filter(pl.col("proxy") == lead).sort(["rank", "dataset_id"]).to_dicts() if rankings.height else []
    leaked = leaks(rankings)
    rows = [r for r in every if r["dataset_id"] not in leaked]
    best = [r for r in rows if r["tied_with_best"]] or [r for r in rows if r["rank"] == rows[0]["rank"]] if rows else []
    outside = [r for r in rows if r not in best]
    return Choice(lead, best, outside[0] if outside else None, leaked, rows, every)


def verdict(rankings: pl.DataFrame, level: float = 0.9) -> list[str]:
    """The verdict, first line `train on: ...`, then how far behind the next candidate is.

    rankings: the ranking table (dataset_id, proxy, score_mean, rank, tied_with_best;
    p_best and findings `flags` where present). level: ranking.level, the confidence the
    best set is stated at. One candidate in the best set: it is named with how many proxies
    rank it first. Several: all are named as not told apart, and the order among them is
    given as no more than that. The next line names the best candidate outside the best
    set and its gap on the lead ranking (the ensemble's mean rank, else the proxy's score).
    A candidate that leaks the real sample (a finding of `LEAKS` over its limit) is never named:
    one `passed over:` line says why, for each such candidate ranked at or above the last one named.
    """
    if rankings.height == 0:
        return ["train on: nothing yet (no candidate was ranked)"]
    choice = choose(rankings)
    lead, best, leaked, every = choice.lead, choice.best, choice.leaked, choice.every
    if not best:
        return ["train on: nothing: every ranked candidate copies the real sample",
                *(_passed_over_line(r, leaked[r["dataset_id"]]) for r in every)]
    best_ids = choice.train_on
    first = best[0]  # the best set's highest-ranked member
    under = _first_under(rankings, first["dataset_id"]) if lead == "ensemble" else f"rank 1 under {lead}"
    if first["rank"] != 1:
        under = f"rank {first['rank']}, the best of the candidates that do not copy the real sample"
    if len(best) == 1:
        lines = [f"train on: {first['dataset_id']} ({under}{_chance(first, True)}; best set at {level_text(level)}: "
                 f"{first['dataset_id']})"]
    elif len(best) == len(choice.rows):
        lines = [f"train on: any of the {len(best)} candidates: they cannot be told apart at {level_text(level)} "
                 f"({_names(best_ids)}); more U_r rows or seeds would be needed to separate them"]
    else:
        lines = [f"train on: one of {_names(best_ids)}: these {len(best)} cannot be told apart at {level_text(level)} "
                 f"(best set); {first['dataset_id']} ranks first among them ({under}{_chance(first, False)}), "
                 "which alone does not make it better"]
    last_named = max(r["rank"] for r in best)
    lines.extend(_passed_over_line(r, leaked[r["dataset_id"]]) for r in every
                 if r["dataset_id"] in leaked and r["rank"] <= last_named)
    if choice.after is not None:
        after = choice.after
        lines.append(f"next: {after['dataset_id']} (rank {after['rank']}, {_behind(after, first, lead)})")
    flagged = [r["dataset_id"] for r in best if r.get("flags")]
    if flagged:
        one = len(flagged) == 1
        lines.append(f"caution: {_names(flagged)} in the best set {'is' if one else 'are'} flagged: read "
                     f"{'its' if one else 'their'} findings before training on {'it' if one else 'them'}")
    return lines
