"""Run search: the MLflow-compatible filter/order_by parser and its SQL on a real SQLite store."""

from __future__ import annotations

import base64
import itertools
import json
import math
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shipyard import errors
from shipyard.store import Database
from shipyard.store import tables as t
from shipyard.tracking._search import (
    Clause,
    OrderKey,
    decode_page_token,
    encode_page_token,
    parse_filter,
    parse_order_by,
    search_run_ids,
)

NAN = float("nan")

# -- parser -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("metrics.acc > 0.5", [Clause("metric", "acc", ">", 0.5)]),
        ("metric.acc>=1e-3", [Clause("metric", "acc", ">=", 0.001)]),
        ("metrics.loss < -2", [Clause("metric", "loss", "<", -2.0)]),
        ("metrics.loss<-2.5E2", [Clause("metric", "loss", "<", -250.0)]),
        ("metrics.a = 3", [Clause("metric", "a", "=", 3.0)]),
        ("metrics.a != .5", [Clause("metric", "a", "!=", 0.5)]),
        ("metrics.`my metric` <= 1", [Clause("metric", "my metric", "<=", 1.0)]),
        ('metrics."f1 score" > 0', [Clause("metric", "f1 score", ">", 0.0)]),
        ("metrics.val-loss/x > 0", [Clause("metric", "val-loss/x", ">", 0.0)]),
        ("params.model = 'resnet'", [Clause("param", "model", "=", "resnet")]),
        ('param.model = "resnet"', [Clause("param", "model", "=", "resnet")]),
        ("parameters.model.depth = '3'", [Clause("param", "model.depth", "=", "3")]),
        ("parameter.m LIKE 'res%'", [Clause("param", "m", "LIKE", "res%")]),
        ("params.m ilike 'RES%'", [Clause("param", "m", "ILIKE", "RES%")]),
        ("params.m IN ('a', \"b\")", [Clause("param", "m", "IN", ("a", "b"))]),
        ("params.m not in ('a')", [Clause("param", "m", "NOT IN", ("a",))]),
        ("params.m = 'it''s'", [Clause("param", "m", "=", "it's")]),
        ("params.m = 'a AND b'", [Clause("param", "m", "=", "a AND b")]),
        ("tags.team = 'x'", [Clause("tag", "team", "=", "x")]),
        ("tag.`x y` IS NULL", [Clause("tag", "x y", "IS NULL", None)]),
        ("tags.mlflow.runName is not null", [Clause("tag", "mlflow.runName", "IS NOT NULL", None)]),
        ("attributes.status = 'finished'", [Clause("attribute", "status", "=", "FINISHED")]),
        ("status IN ('RUNNING','KILLED')",
         [Clause("attribute", "status", "IN", ("RUNNING", "KILLED"))]),
        ("attr.run_uuid = 'abc'", [Clause("attribute", "run_id", "=", "abc")]),
        ("run.user = 'me'", [Clause("attribute", "user_id", "=", "me")]),
        ("attributes.created >= 1000", [Clause("attribute", "start_time", ">=", 1000)]),
        ("attributes.end_time < 1.5", [Clause("attribute", "end_time", "<", 1.5)]),
        ("attributes.run_name LIKE 'x%'", [Clause("attribute", "run_name", "LIKE", "x%")]),
        ('attributes."run name" = \'x\'', [Clause("attribute", "run_name", "=", "x")]),
        ("attributes.experiment_id IN (1, '2')",
         [Clause("attribute", "experiment_id", "IN", (1, 2))]),
        ("attributes.parent_run_id IS NULL",
         [Clause("attribute", "parent_run_id", "IS NULL", None)]),
        ("attributes.lifecycle_stage = 'Deleted'",
         [Clause("attribute", "lifecycle_stage", "=", "deleted")]),
        ("datasets.name = 'mnist'", [Clause("dataset", "name", "=", "mnist")]),
        ("dataset.context IN ('eval')", [Clause("dataset", "context", "IN", ("eval",))]),
        ("metrics.a > 1 and params.b = 'c' AND tags.d != 'e'",
         [Clause("metric", "a", ">", 1.0), Clause("param", "b", "=", "c"),
          Clause("tag", "d", "!=", "e")]),
        ("", []),
        ("   \n ", []),
        (None, []),
    ],
)
def test_parse_valid(text, expected):
    assert parse_filter(text) == expected


@pytest.mark.parametrize(
    ("text", "pos", "near"),
    [
        ("metrics.acc ~ 1", 12, "~"),
        ("metrics.acc == 1", 12, "=="),
        ("metrics.acc > 1 OR metrics.b < 2", 16, "OR"),
        ("metrics.acc > 1 AND", 19, None),
        ("metrics.acc > 1 AND  ", 21, None),
        ("params.a = 'x", 11, "'x"),
        ('params.a = "x', 11, '"x'),
        ("params.`a = 'x'", 7, "`a"),
        ('params."a = 1', 7, '"a'),
        ("metrics. > 1", 8, "metrics."),
        ("params.a IN ()", 13, ")"),
        ("params.a IN ('a',)", 17, ")"),
        ("params.a IN ('a' 'b')", 17, "'b'"),
        ("params.a IN 'a'", 12, "'a'"),
        ("metrics.a = 'x'", 12, "'x'"),
        ("params.a = 1", 11, "1"),
        ("tags.a = 1.5", 9, "1.5"),
        ("foo.a = 1", 0, "foo.a"),
        ("attributes.nope = 'x'", 0, "attributes.nope"),
        ("nope = 'x'", 0, "nope"),
        ("datasets.size = 'x'", 0, "datasets.size"),
        ("params.`` = 'x'", 0, "params.``"),
        ("metrics.a >", 11, None),
        ("metrics.a", 9, None),
        ("metrics.a 1", 10, "1"),
        ("metrics.a LIKE 'x'", 10, "LIKE"),
        ("metrics.a IS NULL", 10, "IS"),
        ("params.a IS NULL", 9, "IS"),
        ("tags.a IS 'x'", 10, "'x'"),
        ("tags.a NOT LIKE 'x'", 11, "LIKE"),
        ("tags.a BETWEEN 1", 7, "BETWEEN"),
        ("params.a LIKE 'x\\'", 14, "'x\\'"),
        ("status = 'DONE'", 9, "'DONE'"),
        ("attributes.start_time > 'x'", 24, "'x'"),
        ("attributes.experiment_id = 1.5", 27, "1.5"),
        ("attributes.experiment_id = 'one'", 27, "'one'"),
        ("attributes.run_id LIKE 'x'", 18, "LIKE"),
        ("metrics.a > 1 metrics.b < 1", 14, "metrics.b"),
        ("AND metrics.a > 1", 0, "AND"),
        ("metrics.a > 1 AND AND metrics.b > 1", 18, "AND"),
        ("metrics.a > 1 ; drop", 14, ";"),
        ("(metrics.a > 1)", 0, "("),
        ("metrics.a > nan", 12, "nan"),
    ],
)
def test_parse_invalid_names_position_and_token(text, pos, near):
    with pytest.raises(errors.InvalidInput) as info:
        parse_filter(text)
    msg = str(info.value)
    assert f"position {pos} " in msg
    assert (f'near "{near}' in msg) if near else ("end of input" in msg)
    assert info.value.field == "filter"


def test_or_error_says_unsupported():
    with pytest.raises(errors.InvalidInput, match="OR is not supported"):
        parse_filter("params.a = 'x' or params.b = 'y'")


def test_unknown_attribute_lists_valid_ones():
    with pytest.raises(errors.InvalidInput, match="run_name.*start_time.*status"):
        parse_filter("attributes.colour = 'red'")


@pytest.mark.parametrize(
    ("items", "expected"),
    [
        (["metrics.auc DESC"], [OrderKey("metric", "auc", False)]),
        (["params.model"], [OrderKey("param", "model", True)]),
        (["attributes.start_time ASC"], [OrderKey("attribute", "start_time", True)]),
        (["start_time"], [OrderKey("attribute", "start_time", True)]),
        (["tags.`x y` desc"], [OrderKey("tag", "x y", False)]),
        (['metrics."f 1" asc', "run_name"],
         [OrderKey("metric", "f 1", True), OrderKey("attribute", "run_name", True)]),
        (["created DESC"], [OrderKey("attribute", "start_time", False)]),
        (None, []),
        ([], []),
    ],
)
def test_parse_order_by(items, expected):
    assert parse_order_by(items) == expected


@pytest.mark.parametrize(
    ("item", "pos"),
    [("metrics.a up", 10), ("datasets.name", 0), ("", 0), ("colour", 0),
     ("metrics.a DESC x", 15), ("metrics.`a DESC", 8), ("foo.a", 0)],
)
def test_parse_order_by_invalid(item, pos):
    with pytest.raises(errors.InvalidInput, match=f"position {pos} ") as info:
        parse_order_by(["start_time", item])
    assert "order_by item 1" in str(info.value)
    assert info.value.field == "order_by"


# -- page tokens --------------------------------------------------------------------------------


def test_page_token_round_trip():
    for offset in (0, 1, 999, 10**9):
        token = encode_page_token(offset)
        assert decode_page_token(token) == offset
        assert json.loads(base64.urlsafe_b64decode(token)) == {"offset": offset}


def _b64(obj) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode()


@pytest.mark.parametrize(
    "token",
    ["!!!", "abc", _b64([1]), _b64({"offset": -1}), _b64({"offset": "3"}),
     _b64({"offset": True}), _b64({"offset": 1.5}), _b64({}), _b64(None),
     base64.urlsafe_b64encode(b"\xff\xfe").decode()],
)
def test_bad_page_token(token):
    with pytest.raises(errors.InvalidInput, match="page token"):
        decode_page_token(token)


# -- a small world on SQLite ----------------------------------------------------------------------


class World:
    """An SQLite store and helpers that insert rows directly and search by run name."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.ids: dict[str, str] = {}
        self.names: dict[str, str] = {}
        self._exps: set[int] = set()

    def experiment(self, eid: int) -> None:
        if eid in self._exps:
            return
        with self.db.write() as conn:
            conn.execute(t.experiments.insert().values(
                experiment_id=eid, name=f"exp-{eid}", lifecycle_stage="active",
                creation_time=0, last_update_time=0))
        self._exps.add(eid)

    def run(self, name, *, run_name=None, exp=1, start=0, end=None, status="FINISHED",
            stage="active", parent=None, user="u", params=None, tags=None, metrics=None,
            run_id=None) -> str:
        self.experiment(exp)
        rid = run_id or uuid.uuid4().hex
        self.ids[name], self.names[rid] = rid, name
        with self.db.write() as conn:
            conn.execute(t.runs.insert().values(
                run_id=rid, experiment_id=exp, run_name=run_name or name, status=status,
                start_time=start, end_time=end, lifecycle_stage=stage,
                parent_run_id=self.ids.get(parent, parent), user_id=user))
            for k, v in (params or {}).items():
                conn.execute(t.params.insert().values(run_id=rid, key=k, value=v))
            for k, v in (tags or {}).items():
                conn.execute(t.tags.insert().values(run_id=rid, key=k, value=v))
            for k, v in (metrics or {}).items():
                conn.execute(t.latest_metrics.insert().values(**metric_row(rid, k, v)))
        return rid

    def dataset(self, did, name, digest, users) -> None:
        with self.db.write() as conn:
            conn.execute(t.datasets.insert().values(
                dataset_id=did, name=name, digest=digest, creation_time=0))
            for run, context in users:
                conn.execute(t.run_inputs.insert().values(
                    run_id=self.ids[run], dataset_id=did, context=context))

    def page(self, filter_string=None, order_by=None, *, experiment_ids=None, **kw):
        with self.db.read() as conn:
            ids, token = search_run_ids(conn, experiment_ids=experiment_ids,
                                        filter_string=filter_string, order_by=order_by, **kw)
        return [self.names[i] for i in ids], token

    def search(self, filter_string=None, order_by=None, **kw) -> list[str]:
        names, token = self.page(filter_string, order_by, **kw)
        assert token is None
        return names


def metric_row(run_id, key, value, step=0):
    nan = value is not None and math.isnan(value)
    return {"run_id": run_id, "key": key, "value": None if nan else value, "is_nan": nan,
            "step": step, "timestamp": 0}


@pytest.fixture
def db(tmp_path):
    return Database(f"sqlite:///{tmp_path}/s.db")


@pytest.fixture
def world(db):
    w = World(db)
    w.run("a", run_name="alpha", start=1000, end=1500, user="alice",
          metrics={"acc": 0.9, "loss": 0.1},
          params={"model": "resnet", "lr": "0.01", "model.depth": "3"},
          tags={"team": "vision", "note x": "hello"})
    w.run("b", run_name="Beta", start=2000, status="RUNNING", user="bob",
          metrics={"acc": 0.5, "loss": NAN}, params={"model": "ResNet", "lr": "0.1"},
          tags={"team": "nlp", "empty": None})
    w.run("c", run_name="gamma_1", start=3000, end=3500, status="FAILED", parent="a",
          metrics={"acc": 0.7}, params={"model": "vit"})
    w.run("d", run_name="delta", exp=2, start=4000, end=4500, parent="a",
          metrics={"acc": 0.9, "loss": 0.3}, params={"model": "res_net"},
          tags={"team": "vision"})
    w.run("e", run_name="eps", start=5000, stage="deleted", metrics={"acc": 1.0},
          params={"model": "resnet"})
    w.dataset("ds1", "mnist", "abc", [("a", "training"), ("d", "eval")])
    w.dataset("ds2", "cifar", "def", [("b", "eval")])
    return w


# -- query results --------------------------------------------------------------------------------


def test_default_order_and_scopes(world):
    assert world.search() == ["d", "c", "b", "a"]
    assert world.search("  ") == ["d", "c", "b", "a"]
    assert world.search(experiment_ids=[1]) == ["c", "b", "a"]
    assert world.search(experiment_ids=[2, 1]) == ["d", "c", "b", "a"]
    assert world.search(experiment_ids=[]) == []
    assert world.search(experiment_ids=[99]) == []
    assert world.search(run_view="deleted_only") == ["e"]
    assert world.search(run_view="all") == ["e", "d", "c", "b", "a"]
    assert world.search(run_view="ACTIVE_ONLY") == ["d", "c", "b", "a"]


@pytest.mark.parametrize(
    ("filter_string", "expected"),
    [
        ("metrics.acc > 0.6", ["d", "c", "a"]),
        ("metrics.acc = 0.9", ["d", "a"]),
        ("metrics.acc >= 0.9", ["d", "a"]),
        ("metrics.acc <= 0.5", ["b"]),
        ("metrics.acc != 0.9", ["c", "b"]),
        ("metrics.acc > -1e9", ["d", "c", "b", "a"]),
        ("metrics.missing > 0", []),
        # NaN (b's loss) never matches any comparison, not even !=; c has no loss at all.
        ("metrics.loss != 0.1", ["d"]),
        ("metrics.loss < 1e9", ["d", "a"]),
        ("metrics.loss > -1e9", ["d", "a"]),
        ("metrics.acc > 0.6 AND metrics.loss < 0.2", ["a"]),
    ],
)
def test_metric_filters(world, filter_string, expected):
    assert world.search(filter_string) == expected


@pytest.mark.parametrize(
    ("filter_string", "expected"),
    [
        ("params.model = 'resnet'", ["a"]),
        ("params.model != 'resnet'", ["d", "c", "b"]),
        ("params.model IN ('vit', 'ResNet')", ["c", "b"]),
        ("params.model NOT IN ('vit', 'ResNet')", ["d", "a"]),
        ("params.lr = '0.1'", ["b"]),
        ("params.lr != '0.1'", ["a"]),  # runs without the param never match
        ("params.model.depth = '3'", ["a"]),
        ("params.`model.depth` = '3'", ["a"]),
        ("params.nope = 'x'", []),
        ("tags.team = 'vision'", ["d", "a"]),
        ("tags.team IN ('nlp')", ["b"]),
        ("tags.team IS NULL", ["c"]),
        ("tags.team IS NOT NULL", ["d", "b", "a"]),
        ("tags.empty IS NULL", ["d", "c", "b", "a"]),
        ("tags.empty IS NOT NULL", []),
        ("tags.`note x` = 'hello'", ["a"]),
        ('tags."note x" LIKE \'h%\'', ["a"]),
        ("tags.team = 'vision' AND params.model = 'res_net'", ["d"]),
    ],
)
def test_param_and_tag_filters(world, filter_string, expected):
    assert world.search(filter_string) == expected


@pytest.mark.parametrize(
    ("filter_string", "expected"),
    [
        # LIKE is case-sensitive, ILIKE is not; % and _ are wildcards, \ escapes.
        ("params.model LIKE 'res%'", ["d", "a"]),
        ("params.model LIKE 'Res%'", ["b"]),
        ("params.model LIKE 'RES%'", []),
        ("params.model ILIKE 'RES%'", ["d", "b", "a"]),
        ("params.model LIKE 'r_snet'", ["a"]),
        ("params.model LIKE 'res\\_net'", ["d"]),
        ("params.model LIKE '%net'", ["d", "a"]),
        ("params.model ILIKE '%NET'", ["d", "b", "a"]),
        ("params.model LIKE 'vit'", ["c"]),
        ("attributes.run_name LIKE 'beta'", []),
        ("attributes.run_name ILIKE 'beta'", ["b"]),
        ("attributes.run_name LIKE 'gamma%'", ["c"]),
        ("attributes.run_name LIKE 'gamma\\_%'", ["c"]),
    ],
)
def test_like_and_ilike(world, filter_string, expected):
    assert world.search(filter_string) == expected


def test_like_treats_glob_characters_literally(db):
    w = World(db)
    values = {"star": "a*b", "question": "a?b", "bracket": "[ab]", "plain": "axb",
              "percent": "50%", "backslash": "c:\\d"}
    for n, (name, value) in enumerate(values.items()):
        w.run(name, start=n, params={"p": value})
    assert w.search("params.p LIKE 'a*b'") == ["star"]
    assert w.search("params.p LIKE 'a?b'") == ["question"]
    assert w.search("params.p LIKE 'a_b'") == ["plain", "question", "star"]
    assert w.search("params.p LIKE '[ab]'") == ["bracket"]
    assert w.search("params.p LIKE '[%'") == ["bracket"]
    assert w.search("params.p LIKE '%\\%'") == ["percent"]
    assert w.search("params.p LIKE 'c:\\\\d'") == ["backslash"]
    assert w.search("params.p ILIKE 'A*B'") == ["star"]
    assert w.search("params.p ILIKE '%\\%'") == ["percent"]


@pytest.mark.parametrize(
    ("filter_string", "expected"),
    [
        ("attributes.run_name = 'alpha'", ["a"]),
        ("run_name != 'alpha'", ["d", "c", "b"]),
        ("attributes.run_name IN ('alpha', 'delta')", ["d", "a"]),
        ("attributes.status = 'FINISHED'", ["d", "a"]),
        ("attributes.status != 'RUNNING'", ["d", "c", "a"]),
        ("status IN ('FAILED', 'running')", ["c", "b"]),
        ("attributes.status NOT IN ('FINISHED')", ["c", "b"]),
        ("attributes.user_id = 'alice'", ["a"]),
        ("attributes.user = 'bob'", ["b"]),
        ("attributes.start_time >= 2000", ["d", "c", "b"]),
        ("attributes.created < 2000", ["a"]),
        ("attributes.start_time = 3000", ["c"]),
        ("attributes.end_time > 3000", ["d", "c"]),
        ("attributes.experiment_id = 2", ["d"]),
        ("attributes.experiment_id IN (1, '2')", ["d", "c", "b", "a"]),
        ("attributes.parent_run_id IS NULL", ["b", "a"]),
        ("attributes.parent_run_id IS NOT NULL", ["d", "c"]),
        ("attributes.lifecycle_stage = 'active'", ["d", "c", "b", "a"]),
        ("attributes.lifecycle_stage = 'deleted'", []),
    ],
)
def test_attribute_filters(world, filter_string, expected):
    assert world.search(filter_string) == expected


def test_id_filters(world):
    a, b = world.ids["a"], world.ids["b"]
    assert world.search(f"attributes.run_id = '{b}'") == ["b"]
    assert world.search(f"run_uuid IN ('{a}', '{b}')") == ["b", "a"]
    assert world.search(f"attributes.run_id NOT IN ('{a}', '{b}')") == ["d", "c"]
    assert world.search(f"attributes.parent_run_id = '{a}'") == ["d", "c"]
    assert world.search(f"attributes.parent_run_id != '{a}'") == []
    assert world.search("attributes.lifecycle_stage = 'deleted'", run_view="all") == ["e"]


@pytest.mark.parametrize(
    ("filter_string", "expected"),
    [
        ("datasets.name = 'mnist'", ["d", "a"]),
        ("datasets.name != 'mnist'", ["b"]),
        ("datasets.context = 'eval'", ["d", "b"]),
        ("datasets.name = 'mnist' AND datasets.context = 'eval'", ["d"]),
        ("datasets.digest LIKE 'd%'", ["b"]),
        ("datasets.name IN ('cifar', 'imagenet')", ["b"]),
        ("datasets.name ILIKE 'MN%'", ["d", "a"]),
        ("datasets.name = 'imagenet'", []),
    ],
)
def test_dataset_filters(world, filter_string, expected):
    assert world.search(filter_string) == expected


@pytest.mark.parametrize(
    ("order_by", "expected"),
    [
        (["metrics.acc DESC"], ["d", "a", "c", "b"]),  # tie d/a broken by start_time DESC
        (["metrics.acc"], ["b", "c", "d", "a"]),
        (["metrics.acc ASC", "start_time ASC"], ["b", "c", "a", "d"]),
        # b's NaN loss and c's missing loss sort last in both directions.
        (["metrics.loss ASC"], ["a", "d", "c", "b"]),
        (["metrics.loss DESC"], ["d", "a", "c", "b"]),
        (["metrics.nope DESC"], ["d", "c", "b", "a"]),
        (["params.model"], ["b", "d", "a", "c"]),
        (["params.lr DESC"], ["b", "a", "d", "c"]),
        (["tags.team ASC"], ["b", "d", "a", "c"]),
        (["tags.team DESC"], ["d", "a", "b", "c"]),
        (["attributes.start_time ASC"], ["a", "b", "c", "d"]),
        (["start_time"], ["a", "b", "c", "d"]),
        (["end_time ASC"], ["a", "c", "d", "b"]),
        (["end_time DESC"], ["d", "c", "a", "b"]),
        (["run_name DESC"], ["c", "d", "a", "b"]),  # gamma_1, delta, alpha, Beta (binary)
        (["status", "metrics.acc DESC"], ["c", "d", "a", "b"]),
        (["tags.`note x` DESC", "metrics.acc"], ["a", "b", "c", "d"]),
    ],
)
def test_order_by(world, order_by, expected):
    assert world.search(order_by=order_by) == expected


def test_filter_and_order_together(world):
    got = world.search("metrics.acc > 0.6 AND params.model LIKE '%e%'", ["metrics.loss ASC"])
    assert got == ["a", "d"]


def _all_pages(world, size, **kw):
    names, token, pages = [], None, 0
    while True:
        page, token = world.page(max_results=size, page_token=token, **kw)
        assert len(page) <= size
        names += page
        pages += 1
        if token is None:
            return names, pages


@pytest.mark.parametrize("order_by", [None, ["metrics.m DESC"], ["metrics.m"], ["params.p"],
                                      ["tags.t DESC", "metrics.m"]])
@pytest.mark.parametrize("size", [1, 4, 5, 23, 100])
def test_pagination_concatenates_to_full_result(db, order_by, size):
    w = World(db)
    for n in range(23):  # ties in start_time, metric and params; some keys missing
        w.run(f"r{n}", start=n // 3, metrics={} if n % 5 == 0 else {"m": float(n % 4)},
              params={"p": str(n % 3)}, tags={} if n % 2 else {"t": str(n % 4)})
    full = w.search(order_by=order_by)
    assert len(full) == 23
    pages, count = _all_pages(w, size, order_by=order_by)
    assert pages == full
    assert count == math.ceil(23 / size)  # no trailing empty page
    assert len(set(pages)) == 23


def test_last_full_page_token_gives_empty_page(world):
    names, token = world.page(max_results=4)
    assert names == ["d", "c", "b", "a"]
    assert token is None
    names, token = world.page(max_results=3)
    assert names == ["d", "c", "b"]
    assert decode_page_token(token) == 3
    assert world.page(max_results=3, page_token=token) == (["a"], None)
    assert world.page(max_results=3, page_token=encode_page_token(50)) == ([], None)


@pytest.mark.parametrize("kwargs", [{"max_results": 0}, {"max_results": 50001},
                                    {"max_results": -1}, {"max_results": "10"},
                                    {"run_view": "everything"}, {"page_token": "%%%"},
                                    {"experiment_ids": ["x"]},
                                    {"filter_string": "metrics.a ~ 1"},
                                    {"order_by": ["metrics.a sideways"]}])
def test_invalid_arguments(world, kwargs):
    args = {"experiment_ids": None, "filter_string": None, "order_by": None, **kwargs}
    with world.db.read() as conn, pytest.raises(errors.InvalidInput):
        search_run_ids(conn, **args)


def test_max_results_limit_accepted(world):
    assert world.page(max_results=50000) == (["d", "c", "b", "a"], None)


def test_metric_filter_and_order_at_scale_match_an_oracle(db):
    """5,000 runs: the first page is exactly the oracle's top 100 (speed lives in bench/)."""
    values = {}
    with db.write() as conn:
        conn.execute(t.experiments.insert().values(
            experiment_id=1, name="big", creation_time=0, last_update_time=0))
        ids = [uuid.uuid4().hex for _ in range(5000)]
        conn.execute(t.runs.insert(), [
            {"run_id": r, "experiment_id": 1, "run_name": f"r{n}", "status": "FINISHED",
             "start_time": n, "lifecycle_stage": "active"} for n, r in enumerate(ids)])
        rows = [metric_row(r, f"m{k}", ((n * 7919 + k * 104729) % 1000) / 1000)
                for n, r in enumerate(ids) for k in range(5)]
        conn.execute(t.latest_metrics.insert(), rows)
        for row in rows:
            values[(row["run_id"], row["key"])] = row["value"]
    starts = {r: n for n, r in enumerate(ids)}
    expected = sorted((r for r in ids if values[(r, "m0")] > 0.5),
                      key=lambda r: (-values[(r, "m1")], -starts[r], r))[:100]
    args = {"experiment_ids": [1], "filter_string": "metrics.m0 > 0.5",
            "order_by": ["metrics.m1 DESC"], "max_results": 100}
    with db.read() as conn:
        got, token = search_run_ids(conn, **args)
    assert got == expected
    assert token is not None


# -- property: metrics.m > x against a Python oracle ---------------------------------------------


@pytest.fixture(scope="module")
def shared_db(tmp_path_factory):
    return Database(f"sqlite:///{tmp_path_factory.mktemp('prop')}/p.db")


_EXPERIMENTS = itertools.count(1)
_metric_values = st.one_of(
    st.none(), st.just(NAN),
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), st.integers(-3, 3).map(float))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    runs=st.lists(st.tuples(_metric_values, st.integers(0, 3)), max_size=12),
    threshold=st.one_of(st.integers(-3, 3).map(float),
                        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)),
    descending=st.booleans(),
)
def test_metric_threshold_matches_oracle(shared_db, runs, threshold, descending):
    eid = next(_EXPERIMENTS)
    with shared_db.write() as conn:
        conn.execute(t.experiments.insert().values(
            experiment_id=eid, name=f"prop-{eid}", creation_time=0, last_update_time=0))
        rows = [(uuid.uuid4().hex, value, start) for value, start in runs]
        for rid, value, start in rows:
            conn.execute(t.runs.insert().values(
                run_id=rid, experiment_id=eid, status="FINISHED", start_time=start,
                lifecycle_stage="active"))
            if value is not None:
                conn.execute(t.latest_metrics.insert().values(**metric_row(rid, "m", value)))
    matching = [r for r in rows if r[1] is not None and not math.isnan(r[1]) and r[1] > threshold]
    sign = -1 if descending else 1
    by_metric = sorted(matching, key=lambda r: (sign * r[1], -r[2], r[0]))
    by_default = sorted(matching, key=lambda r: (-r[2], r[0]))
    direction = "DESC" if descending else "ASC"
    with shared_db.read() as conn:
        filter_string = f"metrics.m > {threshold!r}"
        got, _ = search_run_ids(conn, experiment_ids=[eid], filter_string=filter_string,
                                order_by=[f"metrics.m {direction}"])
        got_default, _ = search_run_ids(conn, experiment_ids=[eid],
                                        filter_string=filter_string, order_by=None)
    assert got == [r[0] for r in by_metric]
    assert got_default == [r[0] for r in by_default]
