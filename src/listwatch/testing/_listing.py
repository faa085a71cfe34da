"""LIST: resourceVersion semantics, consistent paging, continue tokens
(docs/kubernetes-semantics.md#list).

Which state a LIST returns follows the table of docs/kubernetes-semantics.md#list:

============  ===============  ===========  ===========  ==================
RVM           paging           RV unset     RV="0"       RV="X"
============  ===============  ===========  ===========  ==================
unset         no limit         Most Recent  Any          Not older than
unset         limit            Most Recent  Any          **Exact**
unset         limit+continue   token        token        400
Exact         either           (422)        (422)        Exact
NotOlderThan  either           (422)        Any          Not older than
============  ===============  ===========  ===========  ==================

RV="0" is served "from the watch cache", which ignores ``limit`` (``computeListLimit``).
Every page of a paged list is served at the first page's RV from the store's history, so
the pages form one snapshot even while objects change; the continue token records that
RV and the key after which the next page starts. An RV the store has not reached is waited
for (``too_large_wait``, the cache's 3 s ``blockTimeout``), then refused with 504
ResourceVersionTooLarge; an RV older than the compaction point is 410 Expired.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from listwatch.testing import _status as status
from listwatch.testing._options import EXACT, ListOptions, parse_resource_version
from listwatch.testing._resources import ResourceType
from listwatch.testing._selectors import Selection
from listwatch.testing._store import JsonDict, ObjectStore

CONTINUE_VERSION = "meta.k8s.io/v1"
_BASE64URL_RE = re.compile(r"^[A-Za-z0-9_-]*$")

#: The 410 message for an expired continue token when a new token is offered
#: (docs/kubernetes-semantics.md#paging).
CONTINUE_EXPIRED_MESSAGE = (
    "The provided continue parameter is too old to display a consistent list result. You "
    "can start a new list without the continue parameter, or use the continue token in this "
    "response to retrieve the remainder of the results. Continuing with the provided token "
    "results in an inconsistent list - objects that were created, modified, or deleted "
    "between the time the first chunk was returned and now may show up in the list."
)
#: The etcd3 store's 410 for an exact LIST at a compacted RV.
LIST_TOO_OLD_MESSAGE = "The resourceVersion for the provided list is too old."


# --------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class ContinueToken:
    """``rv`` -1 means "continue at the latest RV" (the inconsistent continue)."""

    rv: int
    start: str

    def encode(self) -> str:
        """base64url without padding of ``{"v":"meta.k8s.io/v1","rv":N,"start":"key\\u0000"}``."""
        raw = json.dumps(
            {"v": CONTINUE_VERSION, "rv": self.rv, "start": self.start}, separators=(",", ":")
        )
        return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode()

    @classmethod
    def decode(cls, token: str) -> ContinueToken:
        """Decode a client's token; 400 "invalid continue token: ..." when it is not one."""
        try:
            return cls._decode(token)
        except ValueError as exc:
            raise status.bad_request(
                f"invalid continue token: continue key is not valid: {exc}"
            ) from exc

    @classmethod
    def _decode(cls, token: str) -> ContinueToken:
        if not _BASE64URL_RE.match(token) or len(token) % 4 == 1:
            raise ValueError("illegal base64 data")
        try:
            data = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            fields: Any = json.loads(data)
        except (binascii.Error, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(str(exc)) from exc
        if not isinstance(fields, dict):
            raise ValueError("not a JSON object")
        version, rv, start = fields.get("v"), fields.get("rv", 0), fields.get("start", "")
        if version != CONTINUE_VERSION:
            raise ValueError(f"server does not recognize this encoded version {version!r}")
        if not isinstance(rv, int) or isinstance(rv, bool) or not isinstance(start, str):
            raise ValueError("malformed token fields")
        if rv == 0:
            raise ValueError(
                f"incorrect encoded start resourceVersion (version {CONTINUE_VERSION})"
            )
        if not start:
            raise ValueError(f"encoded start key empty (version {CONTINUE_VERSION})")
        if any(part in ("", ".", "..") for part in start.split("/")):
            # path.Clean must leave the key alone: no traversal above the resource prefix.
            raise ValueError(start)
        return cls(rv, start)


# --------------------------------------------------------------------------- serving


@dataclass(frozen=True)
class ListResult:
    items: list[JsonDict]
    resource_version: int
    continue_token: str | None
    remaining_item_count: int | None
    shard_selector: str | None = None

    def body(self, resource: ResourceType) -> JsonDict:
        """The ``<Kind>List`` document; built-in items go without ``kind``/``apiVersion``.

        A shard's list echoes its selector (``shardInfo``) only if it is a built-in list:
        ``UnstructuredList`` (a custom resource's) has no ``SetShardInfo``, so its items are
        filtered and nothing says so (docs/kubernetes-semantics.md#sharded-list-and-watch).
        """
        metadata: JsonDict = {"resourceVersion": str(self.resource_version)}
        if self.continue_token:
            metadata["continue"] = self.continue_token
        if self.remaining_item_count is not None:
            metadata["remainingItemCount"] = self.remaining_item_count
        if self.shard_selector is not None and resource.builtin:
            metadata["shardInfo"] = {"selector": self.shard_selector}
        items = self.items
        if resource.builtin:
            items = [
                {k: v for k, v in item.items() if k not in ("kind", "apiVersion")} for item in items
            ]
        return {
            "kind": resource.list_kind,
            "apiVersion": resource.api_version,
            "metadata": metadata,
            "items": items,
        }


@dataclass(frozen=True)
class _Plan:
    """Where a LIST reads: at RV ``at`` (None: the latest), from ``start``, ``limit`` items."""

    at: int | None
    exact: bool
    start: str
    limit: int
    expired_token: ContinueToken | None = None


class Lister:
    """Serves LIST requests from an :class:`ObjectStore`."""

    def __init__(self, store: ObjectStore, *, too_large_wait: float) -> None:
        self._store = store
        self._too_large_wait = too_large_wait

    async def list(
        self,
        resource: ResourceType,
        namespace: str | None,
        options: ListOptions,
        selection: Selection,
    ) -> ListResult:
        plan = self._plan(options)
        if plan.at is not None and plan.at > self._store.resource_version:
            await self._wait_for(plan.at)
        if plan.exact and plan.at is not None and plan.at < self._store.compacted_rv:
            raise self._expired(plan, namespace)
        return self._page(resource, namespace, plan, selection)

    def _plan(self, options: ListOptions) -> _Plan:
        if options.continue_token:
            token = ContinueToken.decode(options.continue_token)
            if options.resource_version not in ("", "0"):
                raise status.bad_request(
                    "specifying resource version is not allowed when using continue"
                )
            at = None if token.rv < 0 else token.rv
            return _Plan(
                at,
                exact=at is not None,
                start=token.start,
                limit=options.limit,
                expired_token=token,
            )
        raw = options.resource_version
        if raw in ("", "0"):
            # Most Recent / Any. The watch cache serves RV=0 and ignores the limit.
            return _Plan(None, exact=False, start="", limit=0 if raw == "0" else options.limit)
        try:
            rv = parse_resource_version(raw)
        except ValueError as exc:
            raise status.bad_request(f"invalid resource version: {exc}") from exc
        match = options.resource_version_match
        if match == EXACT or (not match and options.limit > 0):
            return _Plan(rv, exact=True, start="", limit=options.limit)
        # Not older than X: the latest state once the store has reached X.
        return _Plan(rv, exact=False, start="", limit=options.limit)

    async def _wait_for(self, rv: int) -> None:
        if not await self._store.wait_for_rv(rv, self._too_large_wait):
            raise status.too_large_resource_version(rv, self._store.resource_version)

    def _expired(self, plan: _Plan, namespace: str | None) -> status.StatusError:
        if plan.expired_token is None:
            return status.expired(LIST_TOO_OLD_MESSAGE)
        # handleCompactedErrorForPaging: offer the remainder at the latest RV (rv=-1).
        fresh = ContinueToken(-1, plan.expired_token.start).encode()
        return status.expired(CONTINUE_EXPIRED_MESSAGE, metadata={"continue": fresh})

    def _page(
        self, resource: ResourceType, namespace: str | None, plan: _Plan, selection: Selection
    ) -> ListResult:
        store = self._store
        served_rv = store.resource_version if not plan.exact or plan.at is None else plan.at
        at = plan.at if plan.exact else None
        prefix = f"{namespace}/" if namespace is not None and resource.namespaced else ""
        items: list[JsonDict] = []
        last_key = ""
        more = False
        # Every key from the page's start, matching or not: remainingItemCount is that less
        # the limit, which only a shard selector (not in the predicate's Empty()) makes
        # differ from the count of keys after the page
        # (docs/kubernetes-semantics.md#sharded-list-and-watch).
        seen = 0
        shards = selection.shards
        echo = None if shards is None else shards.text
        for key, obj in store.items(resource, namespace, at=at, start=prefix + plan.start):
            if plan.limit and len(items) >= plan.limit:
                # etcd reports more data when any key follows, matching or not, so a
                # selector can yield a short or even empty final page
                # (docs/kubernetes-semantics.md#paging).
                more = True
                if not selection.empty:
                    break
                seen += 1
                continue
            seen += 1
            if selection.matches(obj):
                items.append(obj)
                last_key = key
        if not more:
            return ListResult(items, served_rv, None, None, echo)
        token = ContinueToken(served_rv, last_key[len(prefix) :] + "\x00").encode()
        remaining = seen - plan.limit if selection.empty else None
        return ListResult(items, served_rv, token, remaining, echo)
