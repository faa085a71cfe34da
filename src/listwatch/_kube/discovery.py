"""Resource names as kubectl writes them, resolved through the API server's discovery.

``pods``, ``nodes``, ``deploy``, ``deployments.apps``, ``deployments.v1.apps``, a custom
resource's ``widgets.example.com``: kubectl resolves each against discovery (the group list
at ``/api`` and ``/apis``, then each group version's resource list) to a group, a version,
and facts the client needs (namespaced or not, the kind, whether it can be listed and
watched). ``resolve`` does the same, so a command line or a config file can name resources
the way their authors name them in kubectl, and the version comes from the server's
*preferred* version when none is given. ``listwatch mirror`` resolves its names with
``resolve``; ``ListWatch.from_client`` with ``resolve_name``, before its first request.

The rules, from kubectl's ``RESTMapper`` (``k8s.io/apimachinery/pkg/api/meta``,
``k8s.io/client-go/restmapper``), in the order kubectl applies them:

* ``resource.version.group`` and ``resource.group`` name the group (and the version);
  with only ``resource``, the core group comes first, then every other group;
* a name matches a resource's plural, its singular name, or one of its short names
  (``po``, ``deploy``), case-insensitively;
* a name that matches in more than one group is ambiguous unless the core group is one of
  them (kubectl prefers it too); say ``resource.group`` then;
* only resources with the ``list`` and ``watch`` verbs can be mirrored, and subresources
  (``pods/log``) cannot.

Only the legacy discovery documents are read (``/api``, ``/api/v1``, ``/apis``,
``/apis/{group}/{version}``): every server serves them, aggregated discovery is an
optimisation of the same facts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp
import orjson

from listwatch._kube import http
from listwatch._models import GroupVersionResource
from listwatch.errors import DiscoveryError, ResourceNotFound, ResponseTooLarge

if TYPE_CHECKING:
    from kubernetes_asyncio.client import ApiClient

__all__ = [
    "DiscoveryError",
    "ResourceName",
    "ServedResource",
    "parse_resource_name",
    "resolve",
    "resolve_name",
]

MAX_DISCOVERY_BYTES = 16 * 1024 * 1024
"""A discovery document of more than this is not one (the largest real ones are ~1 MB)."""

_TIMEOUT = aiohttp.ClientTimeout(sock_connect=30.0, sock_read=60.0)


@dataclass(frozen=True, slots=True)
class ResourceName:
    """A resource as written: ``name`` plus the version and group it was qualified with."""

    name: str
    group: str | None = None
    version: str | None = None

    def __str__(self) -> str:
        parts = [self.name, self.version, self.group]
        return ".".join(part for part in parts if part)


@dataclass(frozen=True, slots=True)
class ServedResource:
    """A resource the server serves, as discovery describes it."""

    gvr: GroupVersionResource
    kind: str
    namespaced: bool
    verbs: frozenset[str]
    short_names: tuple[str, ...] = ()
    singular: str = ""

    def matches(self, name: str) -> bool:
        name = name.lower()
        return name in (self.gvr.resource, self.singular.lower(), self.kind.lower()) or (
            name in (short.lower() for short in self.short_names)
        )


def parse_resource_name(text: str) -> ResourceName:
    """``pods`` -> (pods); ``deployments.apps``; ``deployments.v1.apps`` (kubectl's forms).

    The second dotted part is a version when it looks like one (``v1``, ``v2beta1``),
    exactly as kubectl's ``ParseResourceArg`` decides.
    """
    text = text.strip()
    if not text or "/" in text or any(ch.isspace() for ch in text):
        raise DiscoveryError(
            f"{text!r} is not a resource name (write it as kubectl does: pods, "
            "deployments.apps, deployments.v1.apps)"
        )
    name, _, rest = text.partition(".")
    if not rest:
        return ResourceName(name)
    version, _, group = rest.partition(".")
    if group and _looks_like_version(version):
        return ResourceName(name, group, version)
    return ResourceName(name, rest)


def _looks_like_version(text: str) -> bool:
    """``v1``, ``v1beta2``, ``v2alpha1``: Kubernetes' version format."""
    if not text.startswith("v") or len(text) < 2 or not text[1].isdigit():
        return False
    rest = text[1:].lstrip("0123456789")
    for level in ("alpha", "beta"):
        if rest.startswith(level):
            tail = rest[len(level) :]
            return tail.isdigit()
    return rest == ""


async def resolve(api_client: ApiClient, names: Iterable[str]) -> list[ServedResource]:
    """Each name, resolved against the server's discovery (in the order given).

    Raises ``DiscoveryError`` naming every name that does not resolve, with a reason; an
    unreachable or refusing server raises the usual ``listwatch.errors``.
    """
    catalog = _Catalog(api_client)
    resolved: list[ServedResource] = []
    problems: list[str] = []
    for text in names:
        try:
            resolved.append(await catalog.find(parse_resource_name(text)))
        except DiscoveryError as exc:
            problems.append(str(exc))
    if problems:
        raise DiscoveryError("; ".join(problems))
    return resolved


async def resolve_name(api_client: ApiClient, name: ResourceName) -> ServedResource:
    """One name, already parsed (``group=""`` confines it to the core group)."""
    return await _Catalog(api_client).find(name)


class _Catalog:
    """Discovery documents, fetched once each, as resolving needs them."""

    def __init__(self, api_client: ApiClient) -> None:
        self._api = api_client
        self._groups: dict[str, tuple[str, tuple[str, ...]]] | None = None
        self._resources: dict[tuple[str, str], tuple[ServedResource, ...]] = {}

    async def find(self, name: ResourceName) -> ServedResource:
        groups = await self._preferred_versions()
        if name.group is not None:
            if name.group not in groups:
                raise DiscoveryError(f"{name}: the server has no API group {name.group!r}")
            preferred, versions = groups[name.group]
            version = name.version or preferred
            if version not in versions:
                raise DiscoveryError(
                    f"{name}: group {name.group!r} has no version {version!r} "
                    f"(it serves {', '.join(versions)})"
                )
            candidates = [r for r in await self._list(name.group, version) if r.matches(name.name)]
        else:
            candidates = []
            for group, (preferred, _) in groups.items():
                candidates += [
                    r for r in await self._list(group, preferred) if r.matches(name.name)
                ]
                if group == "" and candidates:
                    break  # the core group wins, as in kubectl
        if not candidates:
            raise DiscoveryError(f"{name}: the server does not serve a resource of that name")
        if len(candidates) > 1:
            which = ", ".join(sorted(c.gvr.qualified for c in candidates))
            raise DiscoveryError(f"{name} is ambiguous ({which}); write it as resource.group")
        served = candidates[0]
        missing = {"list", "watch"} - served.verbs
        if missing:
            raise DiscoveryError(
                f"{name}: {served.gvr.qualified} cannot be mirrored: it does not support "
                f"{' and '.join(sorted(missing))}"
            )
        return served

    async def _preferred_versions(self) -> Mapping[str, tuple[str, tuple[str, ...]]]:
        """``{group: (preferred version, all versions)}``, the core group ``""`` first."""
        if self._groups is None:
            core = await _get_json(self._api, "/api")
            groups: dict[str, tuple[str, tuple[str, ...]]] = {}
            core_versions = tuple(v for v in core.get("versions") or () if isinstance(v, str))
            if core_versions:
                groups[""] = (core_versions[0], core_versions)
            for group in (await _get_json(self._api, "/apis")).get("groups") or ():
                versions = tuple(
                    v["version"] for v in group.get("versions") or () if isinstance(v, dict)
                )
                preferred = (group.get("preferredVersion") or {}).get("version")
                if isinstance(group.get("name"), str) and versions:
                    groups[group["name"]] = (preferred or versions[0], versions)
            self._groups = groups
        return self._groups

    async def _list(self, group: str, version: str) -> Sequence[ServedResource]:
        key = (group, version)
        if key not in self._resources:
            path = f"/apis/{group}/{version}" if group else f"/api/{version}"
            document = await _get_json(self._api, path)
            self._resources[key] = tuple(_served(group, version, document))
        return self._resources[key]


def _served(group: str, version: str, document: Mapping[str, Any]) -> Iterable[ServedResource]:
    for entry in document.get("resources") or ():
        name = entry.get("name") if isinstance(entry, dict) else None
        if not isinstance(name, str) or "/" in name:
            continue  # subresources (pods/log, deployments/scale) are not collections
        yield ServedResource(
            GroupVersionResource(group, version, name),
            kind=str(entry.get("kind") or ""),
            namespaced=bool(entry.get("namespaced")),
            verbs=frozenset(v for v in entry.get("verbs") or () if isinstance(v, str)),
            short_names=tuple(s for s in entry.get("shortNames") or () if isinstance(s, str)),
            singular=str(entry.get("singularName") or ""),
        )


async def _get_json(api_client: ApiClient, path: str) -> dict[str, Any]:
    """GET one discovery document through the client's auth and TLS, size-capped.

    "Not served" (404) is a ``DiscoveryError``, so that ``resolve`` reports it with the
    other names that do not resolve; any other failure is the transport's error.
    """
    request = f"discovery {path}"
    try:
        body = await http.fetch(
            api_client,
            "GET",
            path,
            request=request,
            limits=_TIMEOUT,
            cap=MAX_DISCOVERY_BYTES,
        )
    except ResourceNotFound:
        if path.startswith("/apis/"):
            raise DiscoveryError(f"{request}: the group version is not served") from None
        raise DiscoveryError(f"{request}: not served by this server") from None
    except ResponseTooLarge:
        raise DiscoveryError(
            f"{request}: document larger than {MAX_DISCOVERY_BYTES} bytes"
        ) from None
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise DiscoveryError(f"{request}: the answer is not JSON") from None
    if not isinstance(document, dict):
        raise DiscoveryError(f"{request}: the answer is not a JSON object")
    return document
