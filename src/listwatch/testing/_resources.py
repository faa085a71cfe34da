"""The resource registry: which collections the fake server serves, and how it names them.

A Kubernetes resource is addressed two ways: by URL (``/apis/{group}/{version}/{plural}``)
and inside objects by ``apiVersion`` + ``kind``. The registry maps between the two and knows
the few per-resource facts a list/watch client can observe: namespaced or cluster-scoped,
whether list items carry ``kind``/``apiVersion`` (built-in typed lists omit them,
kubernetes/kubernetes#3030; custom resources keep them, docs/kubernetes-semantics.md#list), and
what a DELETE returns.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from listwatch.testing._status import qualified_resource

#: API groups served by kube-apiserver itself. Any other group with a dot is a
#: CustomResourceDefinition group (a CRD's ``spec.group`` must contain a dot).
BUILTIN_DOTTED_GROUPS = frozenset(
    {
        "admissionregistration.k8s.io",
        "apiextensions.k8s.io",
        "apiregistration.k8s.io",
        "authentication.k8s.io",
        "authorization.k8s.io",
        "certificates.k8s.io",
        "coordination.k8s.io",
        "discovery.k8s.io",
        "events.k8s.io",
        "flowcontrol.apiserver.k8s.io",
        "internal.apiserver.k8s.io",
        "networking.k8s.io",
        "node.k8s.io",
        "rbac.authorization.k8s.io",
        "resource.k8s.io",
        "scheduling.k8s.io",
        "storage.k8s.io",
        "storagemigration.k8s.io",
    }
)


def is_builtin_group(group: str) -> bool:
    return "." not in group or group in BUILTIN_DOTTED_GROUPS


@dataclass(frozen=True)
class ResourceType:
    """One served collection, e.g. core/v1 ``pods`` (kind ``Pod``, namespaced)."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    #: Built-in typed lists omit ``kind``/``apiVersion`` on items; CRD lists keep them.
    builtin: bool
    #: A DELETE answers with the deleted object (pods, services, namespaces, custom
    #: resources: ``ReturnDeletedObject``) instead of a ``Status`` with status Success.
    returns_deleted_object: bool = False
    #: ``AllowUnconditionalUpdate``: a PUT without ``metadata.resourceVersion`` overwrites
    #: (most built-ins), or is refused with 422 (custom resources, leases).
    unconditional_update: bool = True
    #: ``AllowCreateOnUpdate``: a PUT of a missing object creates it (leases, events).
    create_on_update: bool = False
    #: Discovery's ``shortNames`` (``kubectl get po``) and ``categories`` (``kubectl get all``).
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        """``v1`` for the core group, ``group/version`` otherwise."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    @property
    def qualified(self) -> str:
        """``GroupResource`` as messages print it: ``pods``, ``deployments.apps``."""
        return qualified_resource(self.group, self.plural)

    def collection_path(self, namespace: str | None = None) -> str:
        root = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if namespace is not None and self.namespaced:
            return f"{root}/namespaces/{namespace}/{self.plural}"
        return f"{root}/{self.plural}"


def _core(
    plural: str,
    kind: str,
    *,
    namespaced: bool = True,
    returns: bool = False,
    short: tuple[str, ...] = (),
    categories: tuple[str, ...] = (),
) -> ResourceType:
    return ResourceType(
        "", "v1", plural, kind, namespaced, True, returns, short_names=short, categories=categories
    )


#: Short names and categories as kube-apiserver's registries declare them.
BUILTIN_RESOURCES: tuple[ResourceType, ...] = (
    _core("pods", "Pod", returns=True, short=("po",), categories=("all",)),
    _core("nodes", "Node", namespaced=False, short=("no",)),
    _core("namespaces", "Namespace", namespaced=False, returns=True, short=("ns",)),
    _core("configmaps", "ConfigMap", short=("cm",)),
    _core("secrets", "Secret"),
    _core("services", "Service", returns=True, short=("svc",), categories=("all",)),
    _core("events", "Event", short=("ev",)),
    ResourceType(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        True,
        True,
        short_names=("deploy",),
        categories=("all",),
    ),
    ResourceType(
        "coordination.k8s.io",
        "v1",
        "leases",
        "Lease",
        True,
        True,
        unconditional_update=False,
        create_on_update=True,
    ),
)

NAMESPACES = BUILTIN_RESOURCES[2]


class ResourceRegistry:
    """Resources by URL coordinates and by ``apiVersion``/``kind``."""

    def __init__(self) -> None:
        self._by_path: dict[tuple[str, str, str], ResourceType] = {}
        self._by_kind: dict[tuple[str, str], ResourceType] = {}
        #: Resources no longer served, each with the RV of its last write (one per removal;
        #: matched by identity: a resource registered again is a new one, as a recreated
        #: CRD gets a new storage).
        self._removed: list[tuple[ResourceType, int]] = []
        for resource in BUILTIN_RESOURCES:
            self.add(resource)

    def register(
        self,
        group: str,
        version: str,
        plural: str,
        kind: str,
        *,
        namespaced: bool = True,
        short_names: tuple[str, ...] = (),
        categories: tuple[str, ...] = (),
    ) -> ResourceType:
        """Serve a resource from now on (a CRD becoming established, in effect)."""
        if not plural or not kind or not version:
            raise ValueError("plural, kind and version must not be empty")
        if plural != plural.lower() or "/" in plural:
            raise ValueError(f"plural must be a lowercase path segment, got {plural!r}")
        builtin = is_builtin_group(group)
        resource = ResourceType(
            group,
            version,
            plural,
            kind,
            namespaced,
            builtin,
            returns_deleted_object=not builtin,
            unconditional_update=builtin,
            short_names=tuple(short_names),
            categories=tuple(categories),
        )
        self.add(resource)
        return resource

    def add(self, resource: ResourceType) -> None:
        path_key = (resource.group, resource.version, resource.plural)
        kind_key = (resource.api_version, resource.kind)
        known = self._by_path.get(path_key) or self._by_kind.get(kind_key)
        if known is not None:
            if known == resource:
                return
            raise ValueError(f"{resource} conflicts with the registered {known}")
        self._by_path[path_key] = resource
        self._by_kind[kind_key] = resource

    def unregister(self, resource: ResourceType, *, last_rv: int) -> None:
        """Stop serving ``resource`` (its CRD deleted, in effect); ``last_rv`` is the RV of
        its last write, after which its open watches end."""
        if resource in BUILTIN_RESOURCES:
            raise ValueError(f"{resource.qualified} is built in: it is always served")
        if self._by_path.get((resource.group, resource.version, resource.plural)) is not resource:
            raise KeyError(f"{resource.qualified} is not served")
        del self._by_path[(resource.group, resource.version, resource.plural)]
        del self._by_kind[(resource.api_version, resource.kind)]
        self._removed.append((resource, last_rv))

    def served_until(self, resource: ResourceType) -> int | None:
        """None while ``resource`` (this very registration) is served; once it is not, the
        RV of its last write."""
        for removed, last_rv in self._removed:
            if removed is resource:
                return last_rv
        return None

    def by_path(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self._by_path.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        return self._by_kind.get((api_version, kind))

    def require_kind(self, api_version: str, kind: str) -> ResourceType:
        resource = self.by_kind(api_version, kind)
        if resource is None:
            raise KeyError(
                f"no resource is registered for apiVersion={api_version!r} kind={kind!r}"
            )
        return resource

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(self._by_path.values())
