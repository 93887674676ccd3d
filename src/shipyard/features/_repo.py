"""Loading a feature repository: a folder of Python files that declare definitions.

Every top-level ``*.py`` file of the folder whose name does not start with ``_`` (and is not
``setup.py`` or ``conftest.py``) is imported; its module-level :class:`Entity`,
:class:`FeatureView`, :class:`OnDemandFeatureView` and :class:`FeatureService` objects are
the repository. Subfolders and ``_helpers.py`` files are not scanned but can be imported by
the repository's files, which see the folder on ``sys.path`` while it loads.

Each file is imported under its own module name (``customer.py`` -> ``customer``) so that an
on-demand view's function keeps a stable qualified name and a file importing a sibling gets
the very same objects (no double definitions). The modules are removed from ``sys.modules``
afterwards, so loading again reads the files afresh. Nothing heavy is imported here: pandas
or DuckDB load only when a repository file imports them.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import traceback
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from shipyard import errors

from ._definitions import (
    DataFrameSource,
    Entity,
    FeatureService,
    FeatureView,
    OnDemandFeatureView,
    ValueType,
    parse_feature_ref,
)

__all__ = ["Kind", "Definition", "Repo", "load_repo", "KIND_CLASSES"]

Definition = Entity | FeatureView | OnDemandFeatureView | FeatureService


class Kind(StrEnum):
    """The kinds of definition the registry stores (the ``kind`` column)."""

    ENTITY = "entity"
    FEATURE_VIEW = "feature_view"
    ON_DEMAND_VIEW = "on_demand_view"
    FEATURE_SERVICE = "feature_service"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")


#: The definition class of each kind, in dependency order (what apply writes first).
KIND_CLASSES: dict[Kind, type[Definition]] = {
    Kind.ENTITY: Entity,
    Kind.FEATURE_VIEW: FeatureView,
    Kind.ON_DEMAND_VIEW: OnDemandFeatureView,
    Kind.FEATURE_SERVICE: FeatureService,
}

_SKIPPED_FILES = frozenset({"setup.py", "conftest.py"})
# sys.path and sys.modules are process-wide: one repository loads at a time.
_LOAD_LOCK = threading.Lock()


def kind_of(obj: object) -> Kind | None:
    for kind, cls in KIND_CLASSES.items():
        if isinstance(obj, cls):
            return kind
    return None


@dataclass(frozen=True)
class Repo:
    """Validated definitions of one feature repository, by kind and name.

    Build one with :func:`load_repo` (from a folder) or :meth:`Repo.of` (from objects).
    ``files`` maps ``(kind, name)`` to the file that declared it, for messages.
    """

    path: Path | None
    entities: dict[str, Entity] = field(default_factory=dict)
    feature_views: dict[str, FeatureView] = field(default_factory=dict)
    on_demand_views: dict[str, OnDemandFeatureView] = field(default_factory=dict)
    feature_services: dict[str, FeatureService] = field(default_factory=dict)
    files: dict[tuple[Kind, str], str] = field(default_factory=dict)

    @classmethod
    def of(cls, definitions: Iterable[Definition], *, path: Path | None = None) -> Repo:
        """A repository of ``definitions`` declared in code, checked like a loaded one."""
        return _build(path, [(d, "<code>") for d in definitions])

    def by_kind(self, kind: Kind) -> dict[str, Any]:
        """The definitions of one kind, by name."""
        tables: dict[Kind, dict[str, Any]] = {
            Kind.ENTITY: self.entities, Kind.FEATURE_VIEW: self.feature_views,
            Kind.ON_DEMAND_VIEW: self.on_demand_views, Kind.FEATURE_SERVICE: self.feature_services}
        return tables[kind]

    def definitions(self) -> Iterator[tuple[Kind, Definition]]:
        """Every definition, entities first, then views, on-demand views, services."""
        for kind in KIND_CLASSES:
            for name in sorted(self.by_kind(kind)):
                yield kind, self.by_kind(kind)[name]

    def file_of(self, kind: Kind, name: str) -> str | None:
        return self.files.get((kind, name))

    def __len__(self) -> int:
        return sum(len(self.by_kind(kind)) for kind in KIND_CLASSES)


def load_repo(path: str | os.PathLike[str]) -> Repo:
    """Import the feature repository at ``path`` and check its definitions.

    Raises :class:`~shipyard.errors.InvalidInput` naming the file (and line) for a syntax or
    import error, a duplicate name, an unknown entity/view/feature reference or conflicting
    join key types; never a traceback.
    """
    display = Path(path)
    root = display.expanduser().resolve()
    if not root.is_dir():
        raise errors.InvalidInput(f"feature repository {str(display)!r} is not a folder",
                                  field="repo")
    files = sorted(p for p in root.glob("*.py")
                   if not p.name.startswith(("_", ".")) and p.name not in _SKIPPED_FILES)
    if not files:
        raise errors.InvalidInput(f"feature repository {str(display)!r} has no Python files",
                                  field="repo")
    found: list[tuple[Any, str]] = []
    with _LOAD_LOCK:
        modules = _import_files(root, display, files)
    for module, file in modules:
        label = str(display / file.name)
        found.extend((obj, label) for obj in vars(module).values() if kind_of(obj))
    if not found:
        raise errors.InvalidInput(
            f"no feature definitions (Entity, FeatureView, OnDemandFeatureView, "
            f"FeatureService) at module level in {str(display)!r}", field="repo")
    return _build(root, found)


# -- importing -------------------------------------------------------------------------------

def _import_files(root: Path, display: Path, files: list[Path]) -> list[tuple[Any, Path]]:
    names = {f.stem: f for f in files}
    _forget_modules(root)
    for name, file in names.items():
        _check_not_shadowing(name, file, display)
    saved_path = list(sys.path)
    saved_bytecode = sys.dont_write_bytecode
    sys.path.insert(0, str(root))
    # No .pyc next to the user's files: an edit within the same second would read stale code.
    sys.dont_write_bytecode = True
    importlib.invalidate_caches()
    try:
        loaded = []
        for name, file in names.items():
            try:
                module = importlib.import_module(name)
            except (Exception, SystemExit) as exc:
                raise _load_error(exc, root, display, file) from None
            if Path(getattr(module, "__file__", "") or "").resolve() != file:
                raise errors.InvalidInput(
                    f"{display / file.name}: imported as module {name!r}, but that name "
                    f"resolves to {getattr(module, '__file__', None)}; rename the file",
                    field="repo")
            loaded.append((module, file))
        return loaded
    finally:
        sys.path[:] = saved_path
        sys.dont_write_bytecode = saved_bytecode
        _forget_modules(root)


def _check_not_shadowing(name: str, file: Path, display: Path) -> None:
    """A repo file named like another module would replace it for everyone (called after
    this repository's own modules were forgotten, so anything left is someone else's)."""
    if name in sys.stdlib_module_names or name in sys.modules:
        raise errors.InvalidInput(
            f"{display / file.name}: the module name {name!r} is taken by a standard-library "
            "or installed module; rename the file", field="repo")


def _forget_modules(root: Path) -> None:
    # Modules imported from the repo carry a __file__ under str(root) (how it sits on
    # sys.path): a prefix test, no path resolution for each of the ~1000 loaded modules.
    prefix = str(root) + os.sep
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None)
        if isinstance(origin, str) and origin.startswith(prefix):
            sys.modules.pop(name, None)


def _inside(filename: str, root: Path) -> bool:
    try:
        return Path(filename).resolve().is_relative_to(root)
    except (OSError, ValueError):
        return False


def _load_error(exc: BaseException, root: Path, display: Path,
                file: Path) -> errors.InvalidInput:
    """One line naming the repository file and line where loading failed."""
    where = display / file.name
    if isinstance(exc, SyntaxError):
        culprit = Path(exc.filename) if exc.filename else file
        rel = culprit.relative_to(root) if _inside(str(culprit), root) else culprit
        line = f":{exc.lineno}" if exc.lineno else ""
        return errors.InvalidInput(f"{display / rel}{line}: syntax error: {exc.msg}",
                                   field="repo")
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if _inside(f.filename, root)]
    if frames:
        last = frames[-1]
        where = display / Path(last.filename).resolve().relative_to(root)
        return errors.InvalidInput(f"{where}:{last.lineno}: {_describe(exc)}", field="repo")
    return errors.InvalidInput(f"{where}: {_describe(exc)}", field="repo")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, errors.ShipyardError):
        return exc.message
    if type(exc).__name__ == "ValidationError" and hasattr(exc, "errors"):
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}"
                             for e in exc.errors())
        return f"invalid {getattr(exc, 'title', 'definition')}: {problems}"
    return f"{type(exc).__name__}: {exc}"


# -- checks ----------------------------------------------------------------------------------

def _build(path: Path | None, found: list[tuple[Any, str]]) -> Repo:
    repo = Repo(path)
    seen: set[int] = set()
    for obj, file in found:
        if id(obj) in seen:  # one object reachable from several files (imported)
            continue
        seen.add(id(obj))
        kind = kind_of(obj)
        if kind is None:
            raise errors.InvalidInput(f"{obj!r} is not a feature definition", field="repo")
        _add(repo, kind, obj, file)
    _check_join_keys(repo)
    _check_views(repo)
    _check_on_demand_views(repo)
    _check_services(repo)
    return repo


def _add(repo: Repo, kind: Kind, obj: Definition, file: str) -> None:
    existing = repo.by_kind(kind)
    if obj.name in existing:
        raise errors.InvalidInput(
            f"duplicate {kind.label} {obj.name!r}: declared in {repo.files[(kind, obj.name)]} "
            f"and in {file}", field="repo")
    # Feature references ("view:feature") do not say which kind of view they mean.
    twin = {Kind.FEATURE_VIEW: Kind.ON_DEMAND_VIEW,
            Kind.ON_DEMAND_VIEW: Kind.FEATURE_VIEW}.get(kind)
    if twin is not None and obj.name in repo.by_kind(twin):
        raise errors.InvalidInput(
            f"the name {obj.name!r} is used by a {twin.label} ({repo.files[(twin, obj.name)]}) "
            f"and a {kind.label} ({file}); view names must be unique", field="repo")
    existing[obj.name] = obj
    repo.files[(kind, obj.name)] = file


def _where(repo: Repo, kind: Kind, name: str) -> str:
    return f"{kind.label} {name!r} ({repo.files[(kind, name)]})"


def _check_join_keys(repo: Repo) -> None:
    """A join key has one value type across all entities (it is one column of the keys)."""
    key_types: dict[str, tuple[ValueType, str]] = {}
    for entity in repo.entities.values():
        for key in entity.join_keys:
            prior = key_types.setdefault(key, (entity.value_type, entity.name))
            if prior[0] != entity.value_type:
                raise errors.InvalidInput(
                    f"join key {key!r} is {prior[0].value} in entity {prior[1]!r} "
                    f"({repo.files[(Kind.ENTITY, prior[1])]}) but {entity.value_type.value} "
                    f"in {_where(repo, Kind.ENTITY, entity.name)}", field="join_keys")


def _check_views(repo: Repo) -> None:
    for view in repo.feature_views.values():
        where = _where(repo, Kind.FEATURE_VIEW, view.name)
        keys: dict[str, ValueType] = {}
        for name in view.entities:
            entity = repo.entities.get(name)
            if entity is None:
                raise errors.InvalidInput(f"{where} names unknown entity {name!r}; declare "
                                          "it in the repository", field="entities")
            keys.update(dict.fromkeys(entity.join_keys, entity.value_type))
        _check_unique_features(where, view.features)
        if isinstance(view.source, DataFrameSource) and view.source.frame is None:
            raise errors.InvalidInput(
                f"{where}: DataFrameSource {view.source.name!r} has no frame; build it with "
                "DataFrameSource.of(name, frame)", field="source")
        for feature in view.schema_:
            if feature.name in keys and feature.dtype != keys[feature.name]:
                raise errors.InvalidInput(
                    f"{where}: feature {feature.name!r} is {feature.dtype.value} but the join "
                    f"key of that name is {keys[feature.name].value}", field="schema")


def _check_unique_features(where: str, names: list[str]) -> None:
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise errors.InvalidInput(f"{where} declares feature(s) {', '.join(dupes)} twice",
                                  field="schema")


def _resolve_ref(repo: Repo, where: str, ref: str, *, on_demand_ok: bool) -> None:
    view_name, feature = parse_feature_ref(ref)
    view: FeatureView | OnDemandFeatureView | None = repo.feature_views.get(view_name)
    if view is None and on_demand_ok:
        view = repo.on_demand_views.get(view_name)
    if view is None:
        kinds = "feature view or on-demand view" if on_demand_ok else "feature view"
        raise errors.InvalidInput(f"{where} references {ref!r}: no {kinds} named "
                                  f"{view_name!r}", field="features")
    if feature is not None and feature not in view.features:
        raise errors.InvalidInput(
            f"{where} references {ref!r}: view {view_name!r} has no feature {feature!r} "
            f"(it has {', '.join(view.features) or 'none'})", field="features")


def _check_on_demand_views(repo: Repo) -> None:
    for odfv in repo.on_demand_views.values():
        where = _where(repo, Kind.ON_DEMAND_VIEW, odfv.name)
        if not odfv.inputs and not odfv.request_schema:
            raise errors.InvalidInput(f"{where} has no inputs and no request fields",
                                      field="inputs")
        for ref in odfv.inputs:
            _resolve_ref(repo, where, ref, on_demand_ok=False)
        _check_unique_features(where, odfv.features)


def _check_services(repo: Repo) -> None:
    for service in repo.feature_services.values():
        where = _where(repo, Kind.FEATURE_SERVICE, service.name)
        if not service.features:
            raise errors.InvalidInput(f"{where} has no features", field="features")
        for ref in service.features:
            _resolve_ref(repo, where, ref, on_demand_ok=True)
