"""``metadata.managedFields``: which field manager set which fields, recorded on every write
through the API (docs/kubernetes-semantics.md#managed-fields).

kube-apiserver's create, update and patch handlers pass each write through its field
manager (``k8s.io/apiserver/pkg/endpoints/handlers/fieldmanager``, structured-merge-diff)
before storage, so every object listed or watched carries the record, often a fifth or more
of its bytes. The fake reproduces what a client observes of it:

* the manager is the ``fieldManager`` query parameter, else the ``User-Agent`` up to its first
  ``/`` (printable characters, at most 128 bytes: ``prefixFromUserAgent``); kubectl sends
  ``kubectl-create``, ``kubectl-edit``..., kubernetes_asyncio's default agent gives
  ``OpenAPI-Generator``;
* one entry per manager, operation, ``apiVersion`` and subresource, keys in the order the
  server writes them (``manager``, ``operation``, ``apiVersion``, ``time``, ``fieldsType``,
  ``fieldsV1``), sorted as ``sortEncodedManagedFields`` sorts them (operation, time to the
  second, manager, apiVersion, subresource);
* a create records every field the object sets, defaults applied as the body is decoded
  included (a namespace's name label); an update or a patch, the fields it adds or
  changes, which every other manager loses, and the fields it removes, which every manager
  loses; a manager left with none is dropped. ``time`` is the write's, on the entries the
  write gave fields to. Never recorded: ``apiVersion``, ``kind``, ``metadata`` itself and its
  ``name``, ``namespace``, ``uid``, ``resourceVersion``, ``generation``,
  ``creationTimestamp``, ``selfLink``, ``managedFields`` (``stripMetaManager``), nor a
  built-in kind's ``status``, which writes to the main resource do not set (its strategy's
  ``GetResetFields``);
* ``managedFields`` in a request body: absent or ``null`` keeps the stored ones (clients that
  do not know the field cannot erase it), ``[]`` or ``[{}]`` resets them
  (``isResetManagedFields``), a valid list replaces them, an invalid one is ignored.

The Python API of ``FakeApiServer`` writes as storage does, with no field manager (as if
into etcd): an object keeps the ``managedFields`` it was given, and the tests' objects stay
as they wrote them.

Simplified, for want of the Go types' schemas: in a built-in kind, a list of objects with
distinct ``name`` members is keyed by name (``k:{"name":"app"}`` items, as ``containers``,
``volumes`` and ``env`` are), every other list is atomic (one ``f:`` path; ``ports``, keyed
by port and protocol in the schema, included); a custom resource's lists are all atomic, as
without ``x-kubernetes-list-type`` they are. Every object nested below the top level records
its own presence (``.``), as maps and optional structs do, where a required struct would
not; the top-level objects of a built-in kind (``spec``, ``status``) exist before a create
and so record none, while a custom resource's do. The conformance corpus (tests/conformance)
holds this to the recorded kube-apiserver's entries. Not modelled: server-side apply
(``Apply`` entries; the fake refuses apply patches), subresources, the cap of ten ``Update``
managers (``ancient-changes``), and the validation of ``fieldManager``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

JsonDict = dict[str, Any]
Path = tuple[str, ...]
"""One field path as ``fieldsV1`` spells its steps: ``("f:metadata", "f:labels")``."""

UPDATE = "Update"
FIELDS_V1 = "FieldsV1"
MAX_MANAGER_BYTES = 128  # validation.FieldManagerMaxLength

_NEVER_RECORDED: frozenset[Path] = frozenset(
    {("f:apiVersion",), ("f:kind",), ("f:metadata",)}
    | {
        ("f:metadata", f"f:{name}")
        for name in (
            "name",
            "namespace",
            "creationTimestamp",
            "selfLink",
            "uid",
            "clusterName",
            "generation",
            "managedFields",
            "resourceVersion",
        )
    }
)
_BUILTIN_SECTIONS = ("metadata", "spec", "status")
"""Non-pointer structs of a built-in kind: present in the empty object a create starts from."""


def manager_of(field_manager: str | None, user_agent: str) -> str:
    """``managerOrUserAgent``: the ``fieldManager`` given, else the agent's product name."""
    if field_manager:
        return field_manager
    name = ""
    for char in user_agent.split("/", 1)[0]:
        if not char.isprintable():  # Go's unicode.IsPrint: no controls, no space but " "
            continue
        if len((name + char).encode()) > MAX_MANAGER_BYTES:
            break
        name += char
    return name


@dataclass
class _Entry:
    manager: str
    operation: str
    api_version: str
    subresource: str
    time: str | None
    paths: set[Path] = field(default_factory=set)

    @property
    def identity(self) -> tuple[str, str, str, str]:
        return (self.manager, self.operation, self.api_version, self.subresource)

    def encode(self) -> JsonDict:
        entry: JsonDict = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
        }
        if self.time is not None:
            entry["time"] = self.time
        entry["fieldsType"] = FIELDS_V1
        entry["fieldsV1"] = _encode(self.paths)
        if self.subresource:
            entry["subresource"] = self.subresource
        return entry

    def sort_key(self) -> tuple[str, str, str, str, str]:
        # Every time the fake writes, and kube-apiserver's, is RFC 3339 to the second in
        # UTC: as strings they sort as the times do.
        return (self.operation, self.time or "", self.manager, self.api_version, self.subresource)


def record(
    live: JsonDict | None,
    new: JsonDict,
    *,
    manager: str,
    api_version: str,
    builtin: bool,
    now: datetime | None = None,
) -> None:
    """Set ``new``'s ``metadata.managedFields`` for a write of ``manager`` over ``live``
    (``None`` for a create), as kube-apiserver's field manager does for an ``Update``."""
    metadata = new.get("metadata")
    if not isinstance(metadata, dict):
        return  # refused by the store ("metadata must be a JSON object")
    # A copy: a merge patch shares the stored object's untouched members with ``new``.
    metadata = new["metadata"] = dict(metadata)
    live_metadata = (live or {}).get("metadata") or {}
    entries = _starting_entries(metadata.get("managedFields"), live_metadata.get("managedFields"))
    before = _without_managed_fields(live) if live is not None else _empty(new, builtin)
    added: set[Path] = set()
    removed: set[Path] = set()
    _compare(
        _steps(before), _steps(_without_managed_fields(new)), (), added, removed, keyed=builtin
    )
    changed = {
        path
        for path in added - _NEVER_RECORDED
        if not (builtin and path[0] == "f:status")  # the strategy's reset fields
    }
    mine = (manager, UPDATE, api_version, "")
    for entry in entries.values():
        entry.paths -= changed | removed | _NEVER_RECORDED
    if changed:
        stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%SZ")
        own = entries.setdefault(mine, _Entry(manager, UPDATE, api_version, "", stamp))
        own.paths |= changed
        own.time = stamp
    kept = sorted((e for e in entries.values() if e.paths), key=_Entry.sort_key)
    if kept:
        metadata["managedFields"] = [entry.encode() for entry in kept]
    else:
        metadata.pop("managedFields", None)


def _starting_entries(given: Any, stored: Any) -> dict[tuple[str, str, str, str], _Entry]:
    """``decodeManagedFields``: the request's entries, unless it has none or invalid ones."""
    if given in ([], [{}]):
        return {}
    entries = _decode_entries(given)
    if entries:
        return entries
    return _decode_entries(stored) or {}


def _decode_entries(value: Any) -> dict[tuple[str, str, str, str], _Entry] | None:
    if not isinstance(value, list):
        return None
    entries: dict[tuple[str, str, str, str], _Entry] = {}
    for raw in value:
        if not isinstance(raw, dict):
            return None
        operation, api_version = raw.get("operation"), raw.get("apiVersion")
        fields_v1 = raw.get("fieldsV1") or {}
        if operation not in ("Apply", UPDATE) or not isinstance(api_version, str):
            return None
        if not api_version or raw.get("fieldsType") != FIELDS_V1:
            return None
        if not isinstance(fields_v1, dict):
            return None
        time = raw.get("time")
        entry = _Entry(
            str(raw.get("manager") or ""),
            operation,
            api_version,
            str(raw.get("subresource") or ""),
            time if isinstance(time, str) else None,
            _decode(fields_v1, ()),
        )
        entries[entry.identity] = entry
    return entries


def _without_managed_fields(obj: JsonDict) -> JsonDict:
    metadata = obj.get("metadata")
    if not isinstance(metadata, dict) or "managedFields" not in metadata:
        return obj
    return {**obj, "metadata": {k: v for k, v in metadata.items() if k != "managedFields"}}


def _empty(new: JsonDict, builtin: bool) -> JsonDict:
    """The object a create starts from: a built-in kind's zero value has its structs."""
    if not builtin:
        return {}
    return {name: {} for name in _BUILTIN_SECTIONS if isinstance(new.get(name), dict)}


def _compare(
    old: JsonDict,
    new: JsonDict,
    prefix: Path,
    added: set[Path],
    removed: set[Path],
    *,
    keyed: bool,
) -> None:
    """The paths ``new`` adds or changes relative to ``old`` (``added``), and those it drops;
    both map ``fieldsV1`` steps (``f:name``, ``k:{...}``) to values. ``keyed``: lists of
    named objects are keyed by name (built-in kinds)."""
    for step in old.keys() | new.keys():
        path = (*prefix, step)
        before, after = old.get(step, _ABSENT), new.get(step, _ABSENT)
        if isinstance(before, dict) and isinstance(after, dict):
            _compare(_steps(before), _steps(after), path, added, removed, keyed=keyed)
        elif keyed and _named(before) and _named(after):
            _compare(_by_key(before), _by_key(after), path, added, removed, keyed=keyed)
        elif after is _ABSENT:
            _value(before, path, removed, keyed)
        elif before is _ABSENT:
            _value(after, path, added, keyed)
        elif not _same(before, after):
            _value(before, path, removed, keyed)
            _value(after, path, added, keyed)


def _steps(obj: JsonDict) -> JsonDict:
    return {f"f:{name}": value for name, value in obj.items()}


_ABSENT = object()


def _value(value: Any, path: Path, into: set[Path], keyed: bool) -> None:
    """The paths of ``value`` at ``path``: its own (unless a keyed list's), its members'."""
    if keyed and _named(value):
        for step, item in _by_key(value).items():
            _value(item, (*path, step), into, keyed)
        return
    into.add(path)
    if isinstance(value, dict):
        for step, child in _steps(value).items():
            _value(child, (*path, step), into, keyed)


def _named(value: Any) -> bool:
    """A non-empty list of objects with distinct names: containers, volumes, env... The
    schema would say which lists are keyed and by what (``ports`` by port and protocol);
    lacking it, the fake keys those by ``name``, the commonest merge key."""
    if not isinstance(value, list) or not value:
        return False
    names = [item.get("name") if isinstance(item, dict) else None for item in value]
    return all(isinstance(n, str) for n in names) and len(set(names)) == len(names)


def _by_key(items: list[JsonDict]) -> JsonDict:
    """``{'k:{"name":"app"}': item}``: how ``fieldsV1`` names an item of a keyed list."""
    return {
        "k:" + json.dumps({"name": item["name"]}, separators=(",", ":")): item for item in items
    }


def _same(a: Any, b: Any) -> bool:
    """JSON equality (``True`` is not ``1``)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _encode(paths: set[Path]) -> JsonDict:
    """A set of paths as ``fieldsV1``: a trie, ``.`` marking a member that has children."""
    root: JsonDict = {}
    for path in paths:
        node = root
        for step in path:
            node = node.setdefault(step, {})
    return _ordered(root, (), paths)


def _ordered(node: JsonDict, prefix: Path, paths: set[Path]) -> JsonDict:
    out: JsonDict = {".": {}} if node and prefix and prefix in paths else {}
    for step in sorted(node):
        out[step] = _ordered(node[step], (*prefix, step), paths)
    return out


def _decode(trie: JsonDict, prefix: Path) -> set[Path]:
    paths: set[Path] = set()
    for step, child in trie.items():
        if step == ".":
            if prefix:
                paths.add(prefix)
            continue
        path = (*prefix, step)
        if isinstance(child, dict) and child:
            paths |= _decode(child, path)
        else:
            paths.add(path)
    return paths
