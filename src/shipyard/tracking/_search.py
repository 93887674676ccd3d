"""Run search: MLflow-compatible filter strings and order_by items compiled to SQLAlchemy Core.

Filter grammar: ``<clause> [AND <clause>]...`` where a clause is ``<entity>.<key> <cmp> <value>``.
Entities: metric(s), param(s)/parameter(s), tag(s), attribute(s)/attr/run, dataset(s); a bare key
(``status = 'FINISHED'``) is an attribute. Keys may contain dots (everything after the first dot)
or be quoted with backticks or double quotes. ``OR`` is rejected. Every error is
:class:`~shipyard.errors.InvalidInput` naming the 0-based character position and the token.

Semantics callers should know:

* A metric clause compares the *latest* value (``latest_metrics``); NaN never matches.
* Param/tag/dataset clauses (including ``!=`` and ``NOT IN``) only match runs that have the key;
  ``tags.k IS NULL`` matches runs without the tag (or with a NULL value).
* ``LIKE`` is case-sensitive and ``ILIKE`` case-insensitive on both SQLite and PostgreSQL;
  ``%`` and ``_`` are wildcards and a backslash escapes the next character. On SQLite, ILIKE
  folds ASCII letters only.
* Ordering puts runs missing the key (or with a NaN metric) last in both directions, then
  ``start_time DESC`` (unless ordered on already), then ``run_id`` for stable pagination.
  Strings sort by the database collation (binary on SQLite).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from shipyard import errors
from shipyard.store._schema import datasets, latest_metrics, params, run_inputs, runs, tags

__all__ = ["Clause", "OrderKey", "parse_filter", "parse_order_by", "search_run_ids",
           "encode_page_token", "decode_page_token", "MAX_RESULTS_LIMIT"]

MAX_RESULTS_LIMIT = 50000
Value = float | int | str | tuple[Any, ...] | None

_ENTITIES = {
    **dict.fromkeys(("metric", "metrics"), "metric"),
    **dict.fromkeys(("param", "params", "parameter", "parameters"), "param"),
    **dict.fromkeys(("tag", "tags"), "tag"),
    **dict.fromkeys(("attribute", "attributes", "attr", "run"), "attribute"),
    **dict.fromkeys(("dataset", "datasets"), "dataset"),
}
_NUMERIC = ("=", "!=", "<", "<=", ">", ">=")
_STRING = ("=", "!=", "LIKE", "ILIKE", "IN", "NOT IN")
_ALLOWED = {
    "metric": _NUMERIC,
    "param": _STRING,
    "tag": (*_STRING, "IS NULL", "IS NOT NULL"),
    "dataset": ("=", "!=", "LIKE", "ILIKE", "IN"),
}
# attribute -> (value kind, comparators)
_ATTRIBUTES: dict[str, tuple[str, tuple[str, ...]]] = {
    "run_id": ("str", ("=", "!=", "IN", "NOT IN")),
    "run_name": ("str", ("=", "!=", "LIKE", "ILIKE", "IN", "NOT IN")),
    "status": ("status", ("=", "!=", "IN", "NOT IN")),
    "user_id": ("str", _STRING),
    "start_time": ("num", _NUMERIC),
    "end_time": ("num", _NUMERIC),
    "experiment_id": ("int", ("=", "IN")),
    "parent_run_id": ("str", ("=", "!=", "IS NULL", "IS NOT NULL")),
    "lifecycle_stage": ("stage", ("=", "!=", "IN", "NOT IN")),
}
_ATTR_ALIASES = {
    "run_uuid": "run_id", "user": "user_id", "created": "start_time", "Created": "start_time",
    "run name": "run_name", "Run name": "run_name", "Run Name": "run_name",
}
_ENUMS = {
    "status": ("RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"),
    "stage": ("active", "deleted"),
}
_DATASET_KEYS = ("name", "digest", "context")
_RUN_VIEWS = {"active_only": ("active",), "deleted_only": ("deleted",), "all": None}

_TOKEN_RE = re.compile(
    r"""(?P<ws>\s+)
    |(?P<ident>(?P<entity>[A-Za-z_]\w*)\.
        (?:`(?P<bt>[^`]*)`|"(?P<dq>(?:[^"]|"")*)"|(?P<bare>[\w][\w\-./]*)))
    |(?P<badident>[A-Za-z_]\w*\.)
    |(?P<number>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    |(?P<string>'(?:[^']|'')*'|"(?:[^"]|"")*")
    |(?P<op>[!<>=~]+)
    |(?P<punct>[(),])
    |(?P<word>[A-Za-z_]\w*)""",
    re.VERBOSE,
)


@dataclass(frozen=True)
class Clause:
    """One ``entity.key comparator value`` condition.

    ``entity`` is ``metric``/``param``/``tag``/``attribute``/``dataset``; attribute keys are
    canonical (``run_uuid`` -> ``run_id``). ``comparator`` is upper case (``NOT IN``,
    ``IS NULL``...). ``value`` is a float (metrics), int/float (times), str, a tuple for
    ``IN``/``NOT IN``, or None for ``IS [NOT] NULL``.
    """

    entity: str
    key: str
    comparator: str
    value: Value


@dataclass(frozen=True)
class OrderKey:
    """One order_by item: ``entity`` is ``metric``/``param``/``tag``/``attribute``."""

    entity: str
    key: str
    ascending: bool = True


@dataclass(frozen=True)
class _Token:
    kind: str  # ident word number string op punct end
    text: str
    pos: int
    value: Any = None


class _Parser:
    """Recursive descent over the tokens of one filter string or one order_by item."""

    def __init__(self, text: str, what: str) -> None:
        self.what, self.i = what, 0
        self.tokens = _tokenize(text, lambda pos, near, problem: self.fail(
            _Token("error", near, pos), problem))

    def fail(self, tok: _Token, problem: str) -> errors.InvalidInput:
        where = f'near "{tok.text}"' if tok.text else "at end of input"
        return errors.InvalidInput(
            f"invalid {self.what} at position {tok.pos} {where}: {problem}",
            field="order_by" if self.what.startswith("order_by") else "filter")

    def peek(self) -> _Token:
        return self.tokens[self.i]

    def take(self) -> _Token:
        tok = self.tokens[self.i]
        self.i += min(1, len(self.tokens) - 1 - self.i)
        return tok

    def is_word(self, tok: _Token, *words: str) -> bool:
        return tok.kind == "word" and tok.text.upper() in words

    def identifier(self) -> tuple[str, str, _Token]:
        """``(entity, key, token)``; a bare word is an attribute."""
        tok = self.take()
        if tok.kind == "word" and not self.is_word(tok, "AND", "OR", "NOT", "IN", "IS", "LIKE"):
            return "attribute", _attribute_key(tok.text, tok, self), tok
        if tok.kind != "ident":
            raise self.fail(tok, "expected an identifier such as metrics.<key> or params.<key>")
        raw_entity, key = tok.value
        entity = _ENTITIES.get(raw_entity.lower())
        if entity is None:
            valid = ", ".join(sorted(_ENTITIES))
            raise self.fail(tok, f"unknown entity {raw_entity!r} (valid: {valid})")
        if not key:
            raise self.fail(tok, "empty key")
        if entity == "attribute":
            key = _attribute_key(key, tok, self)
        elif entity == "dataset" and key not in _DATASET_KEYS:
            raise self.fail(tok, f"unknown dataset field {key!r} (valid: name, digest, context)")
        return entity, key, tok

    def comparator(self) -> tuple[str, _Token]:
        tok = self.take()
        if tok.kind == "op":
            if tok.text not in _NUMERIC:
                raise self.fail(tok, "unknown comparator")
            return tok.text, tok
        if self.is_word(tok, "LIKE", "ILIKE", "IN"):
            return tok.text.upper(), tok
        if self.is_word(tok, "NOT"):
            if not self.is_word(nxt := self.take(), "IN"):
                raise self.fail(nxt, "expected IN after NOT")
            return "NOT IN", tok
        if self.is_word(tok, "IS"):
            nxt = self.take()
            negated = self.is_word(nxt, "NOT")
            if negated:
                nxt = self.take()
            if not self.is_word(nxt, "NULL"):
                raise self.fail(nxt, "expected NULL after IS [NOT]")
            return ("IS NOT NULL" if negated else "IS NULL"), tok
        problem = "unknown comparator" if tok.kind == "word" else "expected a comparator"
        raise self.fail(tok, problem)

    def scalar(self) -> _Token:
        tok = self.take()
        if tok.kind not in ("number", "string"):
            raise self.fail(tok, "expected a value (a number or a quoted string)")
        return tok

    def value_list(self) -> list[_Token]:
        tok = self.take()
        if tok.text != "(":
            raise self.fail(tok, 'expected "(" to start the list after IN')
        if self.peek().text == ")":
            raise self.fail(self.peek(), "empty list after IN")
        items = [self.scalar()]
        while (sep := self.take()).text == ",":
            items.append(self.scalar())
        if sep.text != ")":
            raise self.fail(sep, 'expected "," or ")" in the list')
        return items

    def clause(self) -> Clause:
        entity, key, _ = self.identifier()
        comp, ctok = self.comparator()
        allowed = _ATTRIBUTES[key][1] if entity == "attribute" else _ALLOWED[entity]
        if comp not in allowed:
            subject = f"attribute {key}" if entity == "attribute" else f"{entity}s"
            raise self.fail(ctok, f"{comp} is not supported for {subject} "
                                  f"(use one of: {', '.join(allowed)})")
        if comp.startswith("IS"):
            return Clause(entity, key, comp, None)
        if comp.endswith("IN"):
            items = tuple(self.convert(entity, key, comp, t) for t in self.value_list())
            return Clause(entity, key, comp, items)
        return Clause(entity, key, comp, self.convert(entity, key, comp, self.scalar()))

    def convert(self, entity: str, key: str, comp: str, tok: _Token) -> Any:
        kind = _ATTRIBUTES[key][0] if entity == "attribute" else entity
        if kind in ("metric", "num"):
            if tok.kind != "number":
                raise self.fail(tok, f"{entity} {key} needs a number, not a string")
            return tok.value if kind == "metric" or not tok.value.is_integer() else int(tok.value)
        if kind == "int":
            text = tok.value.strip() if tok.kind == "string" else tok.text
            if not re.fullmatch(r"[+-]?\d+", text):
                raise self.fail(tok, f"{key} needs an integer")
            return int(text)
        if tok.kind != "string":
            raise self.fail(tok, f"values for {entity} {key} must be quoted strings")
        value: str = tok.value
        if kind in _ENUMS:
            value = value.upper() if kind == "status" else value.lower()
            if value not in _ENUMS[kind]:
                raise self.fail(tok, f"invalid {key} (valid: {', '.join(_ENUMS[kind])})")
        if "LIKE" in comp and re.search(r"(?<!\\)(?:\\\\)*\\$", value):
            raise self.fail(tok, "LIKE pattern must not end with an escape character")
        return value


def _attribute_key(key: str, tok: _Token, parser: _Parser) -> str:
    key = _ATTR_ALIASES.get(key, key)
    if key not in _ATTRIBUTES:
        valid = ", ".join(sorted(_ATTRIBUTES))
        raise parser.fail(tok, f"unknown attribute {key!r} (valid: {valid})")
    return key


def _tokenize(text: str, fail: Any) -> list[_Token]:
    tokens, pos = [], 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            ch = text[pos]
            problem = "unterminated quote" if ch in "'\"`" else "unexpected character"
            raise fail(pos, text[pos:pos + 10], problem)
        kind = m.lastgroup if m.lastgroup not in ("bt", "dq", "bare") else "ident"
        tok_text, value = m.group(), cast(Any, None)
        if kind == "ident":
            key = m["bt"] if m["bt"] is not None else m["dq"] or m["bare"] or ""
            value = (m["entity"], key.replace('""', '"') if m["dq"] is not None else key)
        elif kind == "badident":
            rest = text[m.end():]
            if rest[:1] and rest[0] in "`\"":
                raise fail(m.end(), rest[:10], "unterminated quoted key")
            raise fail(m.end(), tok_text, f"missing key after {tok_text!r}")
        elif kind == "number":
            value = float(tok_text)
        elif kind == "string":
            value = tok_text[1:-1].replace(tok_text[0] * 2, tok_text[0])
        if kind != "ws":
            tokens.append(_Token(str(kind), tok_text, pos, value))
        pos = m.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


def parse_filter(filter_string: str | None) -> list[Clause]:
    """Parse an MLflow filter string; None, empty or blank means no clauses."""
    if filter_string is None or not filter_string.strip():
        return []
    p = _Parser(filter_string, "filter")
    clauses = [p.clause()]
    while (tok := p.take()).kind != "end":
        if p.is_word(tok, "OR"):
            raise p.fail(tok, "OR is not supported; combine clauses with AND")
        if not p.is_word(tok, "AND"):
            raise p.fail(tok, "expected AND between clauses")
        if p.peek().kind == "end":
            raise p.fail(p.peek(), "expected a clause after AND")
        clauses.append(p.clause())
    return clauses


def parse_order_by(order_by: list[str] | None) -> list[OrderKey]:
    """Parse items like ``"metrics.auc DESC"``, ``"start_time"`` (bare key = attribute)."""
    keys = []
    for n, item in enumerate(order_by or []):
        if not isinstance(item, str):
            raise errors.InvalidInput(f"order_by item {n} must be a string", field="order_by")
        p = _Parser(item, f"order_by item {n} ({item!r})")
        if p.peek().kind == "end":
            raise p.fail(p.peek(), "empty order_by item")
        entity, key, tok = p.identifier()
        if entity == "dataset":
            raise p.fail(tok, "cannot order by datasets")
        direction = p.take()
        if direction.kind != "end" and not p.is_word(direction, "ASC", "DESC"):
            raise p.fail(direction, "expected ASC or DESC")
        if direction.kind != "end" and (extra := p.take()).kind != "end":
            raise p.fail(extra, "unexpected text after the direction")
        keys.append(OrderKey(entity, key, direction.text.upper() != "DESC"))
    return keys


def encode_page_token(offset: int) -> str:
    """The opaque page token for a result offset."""
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def decode_page_token(token: str) -> int:
    """The offset in a token made by :func:`encode_page_token`; InvalidInput when malformed."""
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode() + b"=" * (-len(token) % 4)))
        offset = data["offset"]
    except (binascii.Error, ValueError, TypeError, KeyError, AttributeError):
        offset = None
    if type(offset) is not int or offset < 0:
        raise errors.InvalidInput(f"invalid page token {token!r}", field="page_token")
    return offset


def _like_to_glob(pattern: str) -> str:
    out, chars = [], iter(pattern)
    for ch in chars:
        if ch == "\\":
            ch = next(chars, "")
            out.append(f"[{ch}]" if ch in "*?[" else ch)
        else:
            out.append({"%": "*", "_": "?", "*": "[*]", "?": "[?]", "[": "[[]"}.get(ch, ch))
    return "".join(out)


def _like(col: Any, pattern: str, dialect: str, insensitive: bool) -> Any:
    if dialect == "postgresql":  # backslash is PostgreSQL's default LIKE escape
        return col.ilike(pattern) if insensitive else col.like(pattern)
    if dialect == "sqlite" and not insensitive:
        return col.op("GLOB")(_like_to_glob(pattern))
    return col.ilike(pattern, escape="\\") if insensitive else col.like(pattern, escape="\\")


def _compare(col: Any, comp: str, value: Any, dialect: str) -> Any:
    if comp in ("LIKE", "ILIKE"):
        return _like(col, value, dialect, comp == "ILIKE")
    op = {"=": "__eq__", "!=": "__ne__", "<": "__lt__", "<=": "__le__", ">": "__gt__",
          ">=": "__ge__", "IN": "in_", "NOT IN": "not_in", "IS NULL": "is_",
          "IS NOT NULL": "is_not"}[comp]
    return getattr(col, op)(list(value) if comp.endswith("IN") else value)


def _exists(table: sa.Table, key: str, *conds: Any) -> Any:
    t = table.alias()
    where = [t.c.run_id == runs.c.run_id, t.c.key == key, *(c(t) for c in conds)]
    return sa.select(t.c.run_id).where(*where).correlate(runs).exists()


def _condition(clause: Clause, dialect: str) -> Any:
    """The SQL boolean for one clause, correlated with ``runs``."""
    comp, value = clause.comparator, clause.value
    if clause.entity == "attribute":
        return _compare(runs.c[clause.key], comp, value, dialect)
    if clause.entity == "metric":
        return _exists(latest_metrics, clause.key, lambda t: t.c.is_nan.is_(False),
                       lambda t: _compare(t.c.value, comp, value, dialect))
    if clause.entity == "dataset":
        ri, ds = run_inputs.alias(), datasets.alias()
        col = ri.c.context if clause.key == "context" else ds.c[clause.key]
        return (sa.select(ri.c.run_id)
                .select_from(ri.join(ds, ri.c.dataset_id == ds.c.dataset_id))
                .where(ri.c.run_id == runs.c.run_id, _compare(col, comp, value, dialect))
                .correlate(runs).exists())
    table = params if clause.entity == "param" else tags
    if comp == "IS NULL":
        return ~_exists(table, clause.key, lambda t: t.c.value.is_not(None))
    return _exists(table, clause.key, lambda t: _compare(t.c.value, comp, value, dialect))


def _sort_terms(col: Any, ascending: bool, nullable: bool, dialect: str) -> list[Any]:
    term = col.asc() if ascending else col.desc()
    if not nullable:
        return [term]
    if dialect == "sqlite":
        return [sa.case((col.is_(None), 1), else_=0), term]
    return [term.nulls_last()]


def _ordering(keys: list[OrderKey], dialect: str) -> tuple[Any, list[Any]]:
    """The FROM clause (runs + one outer join per non-attribute key) and ORDER BY terms."""
    frm: Any = runs
    terms: list[Any] = []
    tables = {"metric": latest_metrics, "param": params, "tag": tags}
    for n, key in enumerate(keys):
        if key.entity == "attribute":
            col, nullable = runs.c[key.key], bool(runs.c[key.key].nullable)
        else:
            t = tables[key.entity].alias(f"order_{n}")
            frm = frm.outerjoin(t, sa.and_(t.c.run_id == runs.c.run_id, t.c.key == key.key))
            col, nullable = t.c.value, True
        terms += _sort_terms(col, key.ascending, nullable, dialect)
    if not any(k.entity == "attribute" and k.key == "start_time" for k in keys):
        terms.append(runs.c.start_time.desc())
    terms.append(runs.c.run_id.asc())
    return frm, terms


def search_run_ids(
    conn: Connection,
    *,
    experiment_ids: list[int] | None,
    filter_string: str | None,
    order_by: list[str] | None,
    run_view: str = "active_only",
    max_results: int = 1000,
    page_token: str | None = None,
) -> tuple[list[str], str | None]:
    """One page of matching run ids in order, and the next page's token (None on the last).

    ``experiment_ids`` None searches every experiment; an empty list matches nothing.
    ``run_view`` is ``active_only``, ``deleted_only`` or ``all`` (case-insensitive).
    Everything is validated before the database is queried; bad input raises InvalidInput.
    """
    clauses, keys = parse_filter(filter_string), parse_order_by(order_by)
    view = str(run_view).lower()
    if view not in _RUN_VIEWS:
        raise errors.InvalidInput(f"invalid run_view {run_view!r} (valid: {', '.join(_RUN_VIEWS)})",
                                  field="run_view")
    if type(max_results) is not int or not 1 <= max_results <= MAX_RESULTS_LIMIT:
        raise errors.InvalidInput(f"max_results must be between 1 and {MAX_RESULTS_LIMIT}, "
                                  f"got {max_results!r}", field="max_results")
    offset = decode_page_token(page_token) if page_token else 0
    try:
        if isinstance(experiment_ids, str | bytes):
            raise TypeError(experiment_ids)
        exp_ids = None if experiment_ids is None else [int(e) for e in experiment_ids]
    except (TypeError, ValueError):
        raise errors.InvalidInput(f"invalid experiment ids {experiment_ids!r}",
                                  field="experiment_ids") from None
    if exp_ids == []:
        return [], None
    dialect = conn.dialect.name
    frm, terms = _ordering(keys, dialect)
    where = [_condition(c, dialect) for c in clauses]
    if exp_ids is not None:
        where.append(runs.c.experiment_id.in_(exp_ids))
    if (stages := _RUN_VIEWS[view]) is not None:
        where.append(runs.c.lifecycle_stage.in_(stages))
    stmt = (sa.select(runs.c.run_id).select_from(frm).where(*where).order_by(*terms)
            .offset(offset).limit(max_results + 1))
    ids = list(conn.execute(stmt).scalars())
    if len(ids) > max_results:
        return ids[:max_results], encode_page_token(offset + max_results)
    return ids, None
