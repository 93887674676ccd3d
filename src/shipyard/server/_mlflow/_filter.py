"""MLflow's search syntax for the small collections searched in memory.

Experiments, registered models, model versions and logged models are few, so their
``filter`` / ``order_by`` / ``page_token`` are applied to the objects in Python, not in SQL
(runs are searched by Shipyard's own SQL search). Grammar: ``<clause> [AND <clause>]...``,
a clause being ``<key> <op> <value>``: ``key`` is ``name``, ``attribute.name``, ``tags.k``,
``params.k`` or ``metrics.k`` (a key may be quoted with backticks or double quotes); ``op`` is
one of ``= != < <= > >= LIKE ILIKE IN NOT IN IS NULL IS NOT NULL``; a value is a quoted
string, a number, or a parenthesized list for ``IN``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from shipyard import errors

__all__ = ["Clause", "parse", "matches", "sort", "page", "Resolver"]

#: (entity, key) → the object's value, or None when it has none.
Resolver = Callable[[Any, str, str], Any]

_ENTITY = {"attribute": "attribute", "attributes": "attribute", "attr": "attribute",
           "tag": "tag", "tags": "tag", "param": "param", "params": "param",
           "parameter": "param", "parameters": "param", "metric": "metric",
           "metrics": "metric"}
_TOKEN = re.compile(r"""
    \s*(?:
      (?P<str>'(?:[^'\\]|\\.|'')*'|"(?:[^"\\]|\\.)*")
    | (?P<tick>`[^`]*`)
    | (?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.]))
    | (?P<op>!=|<>|<=|>=|=|<|>|\(|\)|,)
    | (?P<word>[A-Za-z_][\w.\-]*)
    )""", re.VERBOSE)


@dataclass(frozen=True)
class Clause:
    entity: str
    key: str
    op: str
    value: Any


def _tokens(text: str) -> list[tuple[str, str, int]]:
    out, pos = [], 0
    while pos < len(text):
        if text[pos:].strip() == "":
            break
        match = _TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise errors.InvalidInput(f"invalid filter {text!r} at position {pos}",
                                      field="filter")
        kind = match.lastgroup or ""
        out.append((kind, match.group(kind), match.start(kind)))
        pos = match.end()
    return out


def _unquote(token: str) -> str:
    if token[0] == "'":
        return token[1:-1].replace("''", "'").replace("\\'", "'")
    if token[0] in '"`':
        return token[1:-1]
    return token


def _key(tokens: list[tuple[str, str, int]], i: int, text: str) -> tuple[str, str, int]:
    kind, tok, pos = tokens[i]
    if kind in ("str", "tick"):
        return "attribute", _unquote(tok), i + 1
    if kind != "word":
        raise errors.InvalidInput(f"invalid filter {text!r}: expected a key at position {pos}",
                                  field="filter")
    head, _, rest = tok.partition(".")
    if head.lower() in _ENTITY and (rest or (i + 1 < len(tokens)
                                            and tokens[i + 1][0] in ("tick", "str")
                                            and tok.endswith("."))):
        if not rest:  # tags.`my key`
            return _ENTITY[head.lower()], _unquote(tokens[i + 1][1]), i + 2
        return _ENTITY[head.lower()], rest, i + 1
    return "attribute", tok, i + 1


def parse(text: str | None) -> list[Clause]:
    """The clauses of a filter string; InvalidInput naming the position when malformed."""
    if not text or not text.strip():
        return []
    tokens = _tokens(text)
    clauses: list[Clause] = []
    i = 0
    while i < len(tokens):
        entity, key, i = _key(tokens, i, text)
        words: list[str] = []
        while i < len(tokens) and tokens[i][0] in ("word", "op") and tokens[i][1] != "(" and (
                tokens[i][0] == "op" or tokens[i][1].upper() in ("NOT", "IN", "LIKE", "ILIKE",
                                                                   "IS", "NULL")):
            words.append(tokens[i][1].upper())
            i += 1
            if words[-1] in ("=", "!=", "<>", "<", "<=", ">", ">=", "LIKE", "ILIKE", "IN",
                             "NULL"):
                break
        op = " ".join(words).replace("<>", "!=")
        if op in ("IS NULL", "IS NOT NULL"):
            clauses.append(Clause(entity, key, op, None))
        elif op in ("IN", "NOT IN"):
            values, i = _list(tokens, i, text)
            clauses.append(Clause(entity, key, op, values))
        elif op in ("=", "!=", "<", "<=", ">", ">=", "LIKE", "ILIKE"):
            if i >= len(tokens) or tokens[i][0] not in ("str", "num"):
                raise errors.InvalidInput(f"invalid filter {text!r}: expected a value after "
                                          f"{op!r}", field="filter")
            kind, tok, _ = tokens[i]
            clauses.append(Clause(entity, key, op, float(tok) if kind == "num"
                                  else _unquote(tok)))
            i += 1
        else:
            raise errors.InvalidInput(f"invalid filter {text!r}: unsupported comparison "
                                      f"{op or '(none)'!r} after {key!r}", field="filter")
        if i < len(tokens):
            if tokens[i][1].upper() != "AND":
                raise errors.InvalidInput(f"invalid filter {text!r}: expected AND at position "
                                          f"{tokens[i][2]} (OR is not supported)",
                                          field="filter")
            i += 1
    return clauses


def _list(tokens: list[tuple[str, str, int]], i: int, text: str) -> tuple[list[Any], int]:
    if i >= len(tokens) or tokens[i][1] != "(":
        raise errors.InvalidInput(f"invalid filter {text!r}: IN needs a (list)", field="filter")
    values: list[Any] = []
    i += 1
    while i < len(tokens) and tokens[i][1] != ")":
        kind, tok, _ = tokens[i]
        if kind == "str":
            values.append(_unquote(tok))
        elif kind == "num":
            values.append(float(tok))
        elif tok != ",":
            raise errors.InvalidInput(f"invalid filter {text!r}: bad IN list", field="filter")
        i += 1
    if i >= len(tokens):
        raise errors.InvalidInput(f"invalid filter {text!r}: unclosed IN list", field="filter")
    return values, i + 1


def _like(pattern: str, value: str, fold: bool) -> bool:
    regex = "".join(".*" if c == "%" else "." if c == "_" else re.escape(c) for c in pattern)
    return re.fullmatch(regex, value, re.IGNORECASE | re.DOTALL if fold else re.DOTALL) \
        is not None


def _compare(op: str, have: Any, want: Any) -> bool:
    if op in ("LIKE", "ILIKE"):
        return have is not None and _like(str(want), str(have), op == "ILIKE")
    if have is None:  # as in MLflow: a missing tag is "not equal" to any value
        return op in ("!=", "NOT IN")
    if op in ("IN", "NOT IN"):
        found = any(_equal(have, w) for w in want)
        return found if op == "IN" else not found
    if op == "=":
        return _equal(have, want)
    if op == "!=":
        return not _equal(have, want)
    if isinstance(want, float):
        try:
            return _order(op, float(have), want)
        except (TypeError, ValueError):
            return False
    return _order(op, str(have), str(want))


def _order(op: str, a: Any, b: Any) -> bool:
    return bool({"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op])


def _equal(have: Any, want: Any) -> bool:
    if isinstance(want, float):
        try:
            return float(have) == want
        except (TypeError, ValueError):
            return False
    return str(have) == str(want)


def matches(obj: Any, clauses: Sequence[Clause], resolve: Resolver) -> bool:
    for clause in clauses:
        have = resolve(obj, clause.entity, clause.key)
        if clause.op == "IS NULL":
            ok = have is None
        elif clause.op == "IS NOT NULL":
            ok = have is not None
        else:
            ok = _compare(clause.op, have, clause.value)
        if not ok:
            return False
    return True


def sort(items: list[Any], order_by: Sequence[str], resolve: Resolver,
         default: Sequence[str]) -> list[Any]:
    """Stable multi-key sort by ``order_by`` items like ``name ASC`` / ``tags.k DESC``."""
    keys = [o for o in order_by if o and o.strip()] or list(default)
    for item in reversed(keys):
        words = item.strip().rsplit(None, 1)
        desc = len(words) == 2 and words[1].upper() == "DESC"
        field = words[0] if len(words) == 2 and words[1].upper() in ("ASC", "DESC") \
            else item.strip()
        clauses = _tokens(field)
        entity, key, used = _key(clauses, 0, field)
        if used != len(clauses):
            raise errors.InvalidInput(f"invalid order_by {item!r}", field="order_by")

        def sort_key(obj: Any, entity: str = entity, key: str = key) -> tuple[int, Any]:
            value = resolve(obj, entity, key)
            if value is None:
                return (1, 0)
            return (0, value if isinstance(value, int | float) else str(value))

        present = [o for o in items if resolve(o, entity, key) is not None]
        missing = [o for o in items if resolve(o, entity, key) is None]
        items = sorted(present, key=sort_key, reverse=desc) + missing
    return items


def page(items: list[Any], max_results: int | None, token: str | None,
         limit: int = 50000) -> tuple[list[Any], str | None]:
    """One page of ``items`` and the token of the next (None at the end)."""
    size = 1000 if max_results is None else max_results
    if not 1 <= size <= limit:
        raise errors.InvalidInput(f"max_results must be between 1 and {limit}, got {size}",
                                  field="max_results")
    offset = 0
    if token:
        try:
            offset = int(json.loads(base64.urlsafe_b64decode(
                token.encode() + b"=" * (-len(token) % 4)))["offset"])
        except (binascii.Error, ValueError, TypeError, KeyError):
            raise errors.InvalidInput(f"invalid page token {token!r}",
                                      field="page_token") from None
        if offset < 0:
            raise errors.InvalidInput(f"invalid page token {token!r}", field="page_token")
    chunk = items[offset:offset + size]
    following = None
    if offset + size < len(items):
        following = base64.urlsafe_b64encode(
            json.dumps({"offset": offset + size}).encode()).decode()
    return chunk, following
