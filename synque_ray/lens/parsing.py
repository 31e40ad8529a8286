"""How a rubric writer's answer becomes a list of points (docs/proxies.md, LENS).

`parse_points` digs a list of strings out of code fences, prose around the JSON, an
object wrapping the list, or a plain bulleted list. `points_schema` is the JSON
schema that structured outputs constrain answers to, with the same length limit the
parser cuts at.
"""

from __future__ import annotations

import json
import re

POINT_MAX_CHARS = 160  # a point longer than this is cut (parser) or disallowed (schema)


def _strip_fences(text: str) -> str:
    fenced = re.findall(r"```(?:[a-zA-Z]+)?\s*(.*?)```", text, flags=re.DOTALL)
    return "\n".join(fenced) if fenced else text


def _as_points(value: object) -> list[str] | None:
    """A list of statements from a decoded JSON value, or None when it holds none."""
    if isinstance(value, dict):
        for inner in value.values():  # {"points": [...]} or similar wrappers
            found = _as_points(inner)
            if found:
                return found
        return None
    if not isinstance(value, list):
        return None
    points = []
    for item in value:
        if isinstance(item, dict):  # [{"point": "..."}]
            item = next((v for v in item.values() if isinstance(v, str)), None)
        if isinstance(item, (str, int, float)) and not isinstance(item, bool):
            points.append(str(item))
    return points or None


def _json_candidates(text: str):
    decoder = json.JSONDecoder()
    for match in re.finditer(r"[\[{]", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except json.JSONDecodeError:
            continue
        yield value


def _quoted_strings(text: str) -> list[str]:
    """Strings of an unterminated JSON list (an answer cut off by max_tokens)."""
    start = text.find("[")
    if start < 0:
        return []
    found = []
    for match in re.finditer(r'"((?:[^"\\]|\\.)*)"\s*(?=[,\]])', text[start:]):
        try:
            found.append(json.loads(f'"{match.group(1)}"'))
        except json.JSONDecodeError:
            continue
    return found


_BULLET = re.compile(r"^\s*(?:[-*•]|\(?\d{1,2}[.)])\s+(.+?)\s*$")


def _clean(points: list[str], n: int) -> list[str]:
    cleaned, seen = [], set()
    for point in points:
        point = " ".join(point.split()).strip(" -*•\"'")
        point = re.sub(r"^\d{1,2}[.)]\s+", "", point)
        if len(point) < 3 or not re.search(r"[A-Za-z]", point):
            continue
        point = point[:POINT_MAX_CHARS]
        if point.lower() in seen:
            continue
        seen.add(point.lower())
        cleaned.append(point)
    return cleaned[:n]


def parse_points(text: str, n: int) -> list[str]:
    """Up to `n` distinct statements from a writer's answer; [] when it holds none."""
    if not text or not text.strip():
        return []
    body = _strip_fences(text)
    best: list[str] = []
    for value in _json_candidates(body):
        points = _clean(_as_points(value) or [], n)
        if len(points) > len(best):
            best = points
        if len(best) >= n:
            return best
    if best:
        return best
    quoted = _clean(_quoted_strings(body), n)
    if quoted:
        return quoted
    bullets = [m.group(1) for line in body.splitlines() if (m := _BULLET.match(line))]
    return _clean(bullets, n)


def points_schema(n: int) -> dict:
    """A JSON list of exactly n short strings: what structured outputs constrain answers to."""
    item = {"type": "string", "minLength": 8, "maxLength": POINT_MAX_CHARS}
    return {"type": "array", "items": item, "minItems": n, "maxItems": n}


def max_answer_tokens(n: int) -> int:
    """Room for n points of the longest length the schema allows, even at one character per
    token (a degenerate small model writes "1.1.1..."), so a constrained answer always closes."""
    return (POINT_MAX_CHARS + 8) * n + 24

