"""Per-row signals: what each declares (`Signal`), and those of a candidate that are not
proxies: how close each row is to U_r, which rows are near-copies of each other, which
copy a U_r row, and how long each is. They tell a user *which* rows make a candidate rank
low (row_scores.parquet, the report, `synque select --drop-rows`).

Every signal is declared once by what produces it (a proxy in its `Proxy`, the embedding
stage here, LENS in lens_debias.py); `synque_ray.rowschema` collects them, and a signal
returned without a declaration is an error (`check_declared`), never a column dropped
without a word.

Near-duplicates within a candidate are rows whose embeddings have cosine >= 0.95: above
it two rows say the same thing in nearly the same words (on the bundled MiniLM, rows that
differ by a mark, case or one small word score .944-.998, paraphrases .24-.82).

A copy of a reference row (a U_r row for `copies_real`, an evaluation row for
`copies_eval`) is found by `copies`, which takes a row as a copy of reference row r when

1. its text equals r's after `normalised_text` (case and whitespace), whatever the model says;
2. or its embedding has cosine >= `COPY_COSINE` (0.95) with r's, the rule above;
3. or it is r with few words changed *and* still means what r means: the word edit distance
   (`copy_words`: whitespace words, case folded, marks at their ends dropped) is at most
   max(1, 10% of the longer row's words), at least `MIN_SHARED_WORDS` words are left
   unchanged, and the cosine is at least the reference's own `Reference.cosine`;
4. or it holds a run of `Reference.run` consecutive words of r (a long shared n-gram).

Cosine alone misses edited copies: one word replaced in a financial headline kept the
cosine at .95 or more for only 24-26% of copies (benchmarks/bench_copies.py), because one
word carries much of a short row's meaning. Words alone would mark distinct rows of
templated domains ("X EPS beats by $0.01, beats on revenue" for many X). Both thresholds
are calibrated on the reference itself, whose rows are distinct rows of the domain and so
must not be copies of each other. `Reference.cosine` is the 99th percentile, over the
reference's rows, of each row's highest cosine with another (textually different) reference
row that passes rule 3's word test (-1 for a row with none), floored at `COSINE_FLOOR` and
capped at `COPY_COSINE`: rule 3 then marks at most ~1% of the reference's own rows, and a
clean row drawn like them is marked about as rarely. Where the domain's distinct rows are
a word apart (templates), their cosines set the bar above them; where they never are, the
word test alone separates, and the floor applies. `Reference.run` is the shortest run, at
least `RUN_WORDS`, that at most 1% of reference rows share with another reference row.
On the sentiment headlines (U_r samples of 198 rows, no two a word apart: cosine .5, run
13) the rule finds 99% of one-word-changed copies (the cosine alone: 46%) and marks
0-0.05% of 2,000 LLM-written headlines; against the 2,388-row test set, whose reposts and
templates are a word apart, the cosine is .84 and 83-95% are found (BENCHMARKS.md). The
demo's grammar makes U_r's rows so alike that the cosine reaches the cap, and rule 3 then
adds nothing to rule 2.

Cost: exact matching is a set lookup; rules 2-3 compare rows in chunks against every
reference row (memory O(chunk x reference)); rule 3's word edit distance is computed only
for pairs that share enough words to pass it (a sparse product finds them), and rule 4 is
a set lookup of each row's word runs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import polars as pl

# scipy.sparse and scipy.spatial are imported where they are used: a run whose results are all
# reused never computes a row signal, and would otherwise pay a third of a second to load them.

DUPLICATE_COSINE = 0.95  # rows at least this similar (cosine of embeddings) are near-duplicates
COPY_COSINE = DUPLICATE_COSINE  # a candidate row this similar to a reference row copies it (rule 2)
COSINE_FLOOR = 0.5  # rule 3 never accepts a lower cosine: below it the rows mean different things
CALIBRATION_QUANTILE = 0.99  # rules 3-4 may mark at most ~1% of the reference's own distinct rows
EDIT_SHARE = 0.1  # rule 3: at most this share of the longer row's words changed (at least one)
MIN_SHARED_WORDS = 3  # rule 3: a row of two words with one changed is another row, not a copy
RUN_WORDS = 13  # rule 4: the shortest shared run that counts (13 words, as in the GPT-3 paper's contamination check)
_CHUNK = 1024  # rows compared at a time, so memory stays O(chunk x n) on large candidates


@dataclass(frozen=True)
class Signal:
    """One per-row signal. name: its row_scores.parquet column; dtype: its type there; title: how
    the report heads it; meaning: what a high value (or true) says of the row; rule: `synque select
    --drop-rows` takes it (a group id is no rule); shown: a column of the report's example rows."""

    name: str
    dtype: pl.DataType
    title: str
    meaning: str
    rule: bool = True
    shown: bool = False


# The embedding stage's own signals, in their row_scores.parquet order (after the proxies').
SIGNALS = (
    Signal("nearest_real_distance", pl.Float64, "distance to U_r",
           "Euclidean distance from the row's embedding to the nearest U_r row's: high = far from real", shown=True),
    Signal("duplicate_group", pl.Int64, "near-duplicate group",
           "the smallest row index of the row's near-duplicate group, -1 when it has none", rule=False),
    Signal("copies_real", pl.Boolean, "copies U_r", "true: the row copies a U_r row, exactly or nearly"),
    Signal("copies_eval", pl.Boolean, "copies the evaluation set",
           "true: the row copies a row of the contamination (evaluation) set, exactly or nearly; "
           "null when the job names none"),
    Signal("text_chars", pl.Int64, "characters", "the length of the row's stripped text: low = short or empty"),
)


def check_declared(names: Iterable[str], declared: Iterable[str], who: str) -> None:
    """Raise ValueError naming what `who` returned among `names` without declaring it in `declared`."""
    known = set(declared)
    extra = [name for name in names if name not in known]
    if extra:
        raise ValueError(f"{who} returned the row signal {', '.join(map(repr, extra))} that it does not declare "
                         f"(declared: {', '.join(sorted(known)) or 'none'}); declare each as a rowsignals.Signal")


def nearest_real_distance(synthetic: np.ndarray, real: np.ndarray) -> np.ndarray:
    """Shape (n,): Euclidean distance from each candidate row to its nearest U_r row."""
    from scipy.spatial.distance import cdist

    return np.concatenate([cdist(synthetic[i:i + _CHUNK], real).min(axis=1) for i in range(0, len(synthetic), _CHUNK)])


def _unit(embeddings: np.ndarray) -> np.ndarray:
    """Rows scaled to length 1 (a zero row stays zero), so a dot product is a cosine."""
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return embeddings / np.where(norms == 0, 1.0, norms)


def normalised_text(text: str) -> str:
    """The text as a copy is matched: whitespace runs made one space, ends stripped, case
    folded, so a row that was only re-spaced or re-cased still matches its source."""
    return " ".join(text.split()).casefold()


def real_text_set(texts: list[str]) -> frozenset[str]:
    """The normalised texts of a U_r sample, to match candidate rows against."""
    return frozenset(normalised_text(t) for t in texts)


def exact_copies(texts: list[str], real: frozenset[str]) -> np.ndarray:
    """Shape (n,) bool: each text equals a U_r row after `normalised_text` (`real` from
    `real_text_set`). Needs no model, so a copy is caught whatever the embeddings say."""
    return np.array([normalised_text(t) in real for t in texts], dtype=bool)


def near_copies(synthetic: np.ndarray, real: np.ndarray, threshold: float = COPY_COSINE) -> np.ndarray:
    """Shape (n,) bool: each candidate row's embedding has cosine >= `threshold` with some
    U_r row's (synthetic (n, d), real (m, d)): a copy with small edits."""
    unit_real = _unit(real)
    return np.concatenate([(_unit(synthetic[i:i + _CHUNK]) @ unit_real.T).max(axis=1) >= threshold
                           for i in range(0, len(synthetic), _CHUNK)]) if len(synthetic) else np.zeros(0, bool)


def copy_words(text: str) -> tuple[str, ...]:
    """The words a copy is compared by: `normalised_text` split on whitespace, with the marks at
    each word's ends dropped ("rates," and "rates" are one word) and words of marks alone left
    out, so a re-punctuated copy differs from its source by no word."""
    words = (_END_MARKS.sub("", word) for word in normalised_text(text).split(" "))
    return tuple(word for word in words if word)


_END_MARKS = re.compile(r"^\W+|\W+$")


def word_edit_distance(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    """Levenshtein distance counted in words: the fewest words replaced, deleted or inserted
    that turn `a` into `b`."""
    previous = list(range(len(b) + 1))
    for i, word in enumerate(a, start=1):
        current = [i]
        for j, other in enumerate(b, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (word != other)))
        previous = current
    return previous[-1]


def few_words_changed(a: tuple[str, ...], b: tuple[str, ...], distance: int | None = None) -> bool:
    """Rule 3's lexical half: at most max(1, `EDIT_SHARE` of the longer row's words) words
    changed, and at least `MIN_SHARED_WORDS` left as they were. `distance`: the word edit
    distance when already known."""
    longer = max(len(a), len(b))
    allowed = max(1, int(EDIT_SHARE * longer))
    if longer - min(len(a), len(b)) > allowed or longer - allowed < MIN_SHARED_WORDS:
        return False  # the lengths alone rule it out: no need for the distance
    distance = word_edit_distance(a, b) if distance is None else distance
    return distance <= allowed and longer - distance >= MIN_SHARED_WORDS


def _runs(words: tuple[str, ...], length: int) -> set[tuple[str, ...]]:
    return {words[i:i + length] for i in range(len(words) - length + 1)}


@dataclass(frozen=True)
class Reference:
    """Rows that candidate rows must not copy (one seed's U_r, or the evaluation set), prepared
    once for `copies`: texts (`normalised_text`), words (`copy_words`), unit embeddings
    (m, d), and the two thresholds calibrated on the rows themselves (module docstring):
    `cosine` for rule 3 and `run`, the words of a shared run that make rule 4."""

    texts: frozenset[str]
    words: tuple[tuple[str, ...], ...]
    unit: np.ndarray
    cosine: float
    run: int
    runs: frozenset[tuple[str, ...]]


def reference(texts: list[str], embeddings: np.ndarray) -> Reference:
    """The `Reference` of rows `texts` with embeddings (m, d): its thresholds are set so that
    rules 3 and 4 would mark at most ~1% of its own distinct rows as copies of another of its rows.

    Rows with the same normalised text are one row to the calibration (a sample may hold a
    row twice; that is not two rows close in meaning). With fewer than two distinct rows to
    learn from, rule 3 asks for `COPY_COSINE`, as rule 2 does."""
    if len(texts) != len(embeddings):
        raise ValueError(f"reference: {len(texts)} texts but {len(embeddings)} embeddings")
    normal = [normalised_text(t) for t in texts]
    words = tuple(copy_words(t) for t in texts)
    unit = _unit(np.asarray(embeddings, dtype=np.float64))
    codes = np.unique(np.array(normal, dtype=object), return_inverse=True)[1] if normal else np.zeros(0, int)
    # Each row's highest cosine with another row that passes rule 3's word test (-1: none).
    nearest = np.full(len(texts), -1.0)
    for start, cosines, pairs in _few_words_pairs(words, unit, words, unit, COSINE_FLOOR):
        for i, j in pairs:
            if codes[start + i] != codes[j]:
                nearest[start + i] = max(nearest[start + i], cosines[i, j])
    if len(set(normal)) < 2:
        cosine = COPY_COSINE
    else:
        cosine = float(np.quantile(nearest, CALIBRATION_QUANTILE, method="higher"))
        cosine = min(COPY_COSINE, max(COSINE_FLOOR, cosine))
    run = _calibrated_run(words, codes)
    return Reference(frozenset(normal), words, unit, cosine, run,
                     frozenset(r for w in words for r in _runs(w, run)))


def _calibrated_run(words: tuple[tuple[str, ...], ...], codes: np.ndarray) -> int:
    """The shortest run of words, at least `RUN_WORDS`, that at most 1 - CALIBRATION_QUANTILE
    of the rows share with a row of another text (templated rows share long runs)."""
    allowed = (1 - CALIBRATION_QUANTILE) * len(words)
    length = RUN_WORDS
    while True:
        texts_with: dict[tuple[str, ...], set[int]] = {}
        for row, row_words in enumerate(words):
            for run in _runs(row_words, length):
                texts_with.setdefault(run, set()).add(int(codes[row]))
        shared = sum(any(len(texts_with[r]) > 1 for r in _runs(w, length)) for w in words)
        if shared <= allowed:
            return length
        length += 1


def copies(texts: list[str], embeddings: np.ndarray, ref: Reference) -> np.ndarray:
    """Shape (n,) bool: each row (`texts`, embeddings (n, d)) copies a row of `ref` by one of
    the four rules of the module docstring. Compared in chunks of rows: memory O(chunk x m)."""
    if len(texts) != len(embeddings):
        raise ValueError(f"copies: {len(texts)} texts but {len(embeddings)} embeddings")
    found = exact_copies(texts, ref.texts)
    if not len(texts) or not len(ref.words):
        return found
    words = [copy_words(t) for t in texts]
    found |= np.array([any(r in ref.runs for r in _runs(w, ref.run)) for w in words], dtype=bool)
    unit = _unit(np.asarray(embeddings, dtype=np.float64))
    for start, cosines, pairs in _few_words_pairs(words, unit, ref.words, ref.unit, ref.cosine):
        found[start:start + len(cosines)] |= (cosines >= COPY_COSINE).any(axis=1)
        for i, _ in pairs:
            found[start + i] = True
    return found


def _few_words_pairs(words, unit: np.ndarray, ref_words, ref_unit: np.ndarray, minimum: float):
    """Per chunk of rows: (start, cosines (chunk, m) with the reference rows, the pairs (i, j)
    of chunk row i and reference row j whose cosine is >= `minimum` and whose words pass
    `few_words_changed`). The pairs that share too few words to pass are ruled out by a sparse
    product first: a word counts with its occurrence ("the" twice is two words), so the
    shared count bounds the edit distance from below, and the distance is computed only for
    the pairs left."""
    vocabulary: dict[tuple[str, int], int] = {}
    ref_matrix = _occurrences(ref_words, vocabulary, grow=True)
    ref_lengths = np.array([len(w) for w in ref_words])
    for start in range(0, len(words), _CHUNK):
        cosines = unit[start:start + _CHUNK] @ ref_unit.T
        lengths = np.array([len(w) for w in words[start:start + _CHUNK]])
        shared = (_occurrences(words[start:start + _CHUNK], vocabulary, grow=False) @ ref_matrix.T).tocoo()
        longer = np.maximum(lengths[shared.row], ref_lengths[shared.col])
        allowed = np.maximum(1, (EDIT_SHARE * longer).astype(int))
        keep = ((shared.data >= longer - allowed) & (shared.data >= MIN_SHARED_WORDS)
                & (cosines[shared.row, shared.col] >= minimum))
        pairs = [(int(i), int(j)) for i, j in zip(shared.row[keep], shared.col[keep], strict=True)
                 if few_words_changed(words[start + i], ref_words[j])]
        yield start, cosines, pairs


def _occurrences(rows, vocabulary: dict[tuple[str, int], int], grow: bool):
    """A sparse (len(rows), len(vocabulary)) 0/1 matrix: row i has a 1 for each (word, k) such
    that word occurs at least k times in it. With `grow`, unseen pairs are added to
    `vocabulary`; without, they are left out (a word the reference lacks is shared with no row)."""
    from scipy.sparse import csr_matrix

    indices, indptr = [], [0]
    for row in rows:
        seen: dict[str, int] = {}
        for word in row:
            seen[word] = seen.get(word, 0) + 1
            key = (word, seen[word])
            column = vocabulary.setdefault(key, len(vocabulary)) if grow else vocabulary.get(key)
            if column is not None:
                indices.append(column)
        indptr.append(len(indices))
    shape = (len(indptr) - 1, max(len(vocabulary), 1))  # the reference's rows are read first, with `grow`
    return csr_matrix((np.ones(len(indices), dtype=np.int32), indices, indptr), shape=shape)


def duplicate_groups(embeddings: np.ndarray, threshold: float = DUPLICATE_COSINE) -> np.ndarray:
    """Shape (n,): a group id shared by rows linked through chains of near-duplicates
    (the group's smallest row index), -1 for a row with no near-duplicate."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    unit = _unit(embeddings)
    rows, cols = [], []
    for start in range(0, len(unit), _CHUNK):
        similar = unit[start:start + _CHUNK] @ unit.T >= threshold
        i, j = np.nonzero(similar)
        keep = (i + start) < j
        rows.append(i[keep] + start)
        cols.append(j[keep])
    i, j = np.concatenate(rows), np.concatenate(cols)
    n = len(unit)
    _, component = connected_components(coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)), directed=False)
    first = np.full(component.max() + 1, n)
    np.minimum.at(first, component, np.arange(n))
    sizes = np.bincount(component)
    return np.where(sizes[component] > 1, first[component], -1)
