"""Namespaces: their registry defaults, and deletion in two phases, as in a real cluster.

Deleting a namespace is two steps by two components (kubernetes ``pkg/registry/core/
namespace/storage``, ``pkg/controller/namespace/deletion``):

1. The namespace registry does not remove a namespace whose ``spec.finalizers`` is not
   empty (it always holds ``kubernetes`` after create): it sets ``deletionTimestamp`` and
   ``status.phase: Terminating`` (one MODIFIED event) and answers 200 with that object.
   From then on NamespaceLifecycle admission refuses new content in it: 403 "unable to
   create new content in namespace <ns> because it is being terminated", with the cause
   ``NamespaceTerminating`` (store ``_admit_namespace``).
2. The namespace controller deletes everything in it, resource by resource (one DELETED
   event per object, or a MODIFIED one for an object that has finalizers: it stays until
   they are removed). Once nothing is left it removes ``kubernetes`` from
   ``spec.finalizers`` (the ``/finalize`` subresource: MODIFIED) and deletes the namespace
   (DELETED).

Here the controller runs right after the write that makes progress possible, inside the
same request, so a watcher sees the events in the order above without the seconds a real
controller takes. The real controller also writes ``status.conditions``
(``NamespaceContentRemaining``...); the fake does not.

Registry defaults (``namespaceStrategy``): on create ``status.phase`` is ``Active``,
``spec.finalizers`` gains ``kubernetes``, and the label ``kubernetes.io/metadata.name`` is
the name (``SetDefaults_Namespace``); on update ``spec.finalizers`` and ``status`` keep
their stored values (they change only through subresources, which the fake does not serve).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from listwatch.testing._resources import ResourceType
    from listwatch.testing._store import ObjectStore, StoredEvent

JsonDict = dict[str, Any]

KUBERNETES_FINALIZER = "kubernetes"
NAME_LABEL = "kubernetes.io/metadata.name"
ACTIVE = "Active"
TERMINATING = "Terminating"


def set_defaults(obj: JsonDict) -> None:
    """``SetDefaults_Namespace``: the name label. Applied as a request is decoded, before
    the field manager (whose entry then owns the label), and again in :func:`prepare`."""
    metadata = obj.get("metadata")
    if isinstance(metadata, dict):
        labels = {**(metadata.get("labels") or {}), NAME_LABEL: metadata.get("name", "")}
        obj["metadata"] = {**metadata, "labels": labels}


def prepare(obj: JsonDict, old: JsonDict | None) -> JsonDict:
    """``namespaceStrategy`` PrepareForCreate / PrepareForUpdate and the name label."""
    new = {**obj}
    set_defaults(new)
    if old is None:
        finalizers = list((new.get("spec") or {}).get("finalizers") or [])
        if KUBERNETES_FINALIZER not in finalizers:
            finalizers.append(KUBERNETES_FINALIZER)
        new["spec"] = {**(new.get("spec") or {}), "finalizers": finalizers}
        new["status"] = {"phase": ACTIVE}
    else:
        new["spec"] = {**(new.get("spec") or {}), "finalizers": old["spec"].get("finalizers", [])}
        new["status"] = old.get("status", {})
    return new


def terminating(namespace: JsonDict) -> JsonDict:
    """The namespace as the registry's Delete leaves it while it has spec finalizers."""
    marked = {**namespace, "metadata": {**namespace["metadata"]}}
    marked["metadata"]["deletionTimestamp"] = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    marked["status"] = {**namespace.get("status", {}), "phase": TERMINATING}
    return marked


def is_terminating(namespace: JsonDict) -> bool:
    return "deletionTimestamp" in namespace.get("metadata", {})


class NamespaceController:
    """Empties terminating namespaces and finalizes them; runs after each store write.

    It remembers only the names of the namespaces being terminated (bounded by the
    number of namespaces).
    """

    def __init__(
        self,
        store: ObjectStore,
        resources: Callable[[], Iterable[ResourceType]],
        namespaces: ResourceType,
    ) -> None:
        self._store = store
        self._resources = resources
        self._namespaces = namespaces
        self._terminating: set[str] = set()

    def observe(self, event: StoredEvent) -> None:
        """Called for every committed write, in order; may write in turn."""
        if event.resource == self._namespaces:
            if event.type == "DELETED":
                self._terminating.discard(event.key)
            elif is_terminating(event.obj) and event.key not in self._terminating:
                self._terminating.add(event.key)
                self._empty(event.key)
            return
        namespace = event.key.partition("/")[0] if event.resource.namespaced else ""
        if event.type == "DELETED" and namespace in self._terminating:
            self._finalize_if_empty(namespace)

    def _empty(self, namespace: str) -> None:
        """Delete the namespace's content; objects with finalizers are only marked."""
        for resource in self._namespaced():
            for _, obj in list(self._store.items(resource, namespace)):
                if "deletionTimestamp" not in obj["metadata"]:
                    self._store.delete(resource, namespace, obj["metadata"]["name"])
        self._finalize_if_empty(namespace)

    def _finalize_if_empty(self, namespace: str) -> None:
        for resource in self._namespaced():
            if next(iter(self._store.items(resource, namespace)), None) is not None:
                return
        current = self._store.get(self._namespaces, None, namespace)
        if current is None:
            return
        finalizers = [f for f in current["spec"].get("finalizers", []) if f != KUBERNETES_FINALIZER]
        if finalizers != current["spec"].get("finalizers", []):
            current = self._store.finalize(self._namespaces, current, finalizers)
        if not finalizers:
            self._store.delete(self._namespaces, None, namespace)

    def _namespaced(self) -> list[ResourceType]:
        return [r for r in self._resources() if r.namespaced]
