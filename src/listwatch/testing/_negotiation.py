"""Content negotiation: which representation of a resource the ``Accept`` header asks for.

kube-apiserver reads ``Accept`` as a list of media types and serves the *first* one it can
(``NegotiateMediaTypeOptions`` in apiserver ``pkg/endpoints/handlers/negotiation/
negotiate.go``). A media type may ask for a conversion through its parameters: ``as``
(kind), ``g`` (group), ``v`` (version), e.g. client-go's metadata client sends
``application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1,application/json``. The
rules reproduced here, with where they come from:

* The header is split into clauses and sorted by ``q``, most specific first, as
  ``goautoneg.ParseAccept`` does (a stable sort, so equal clauses keep their order).
* A clause matches a served media type exactly, or as ``application/*`` or ``*/*``.
* Its parameters decide whether it is acceptable (``acceptMediaTypeOptions``): ``stream``
  must be ``watch``; ``sv`` must be the meta version ``v1``; unknown keys are ignored.
* A conversion is acceptable only to group ``meta.k8s.io``, version ``v1`` or ``v1beta1``,
  kind ``PartialObjectMetadata`` or ``PartialObjectMetadataList`` (for lists and objects
  alike: the check does not look at the request), or ``Table``
  (``RequestScope.AllowsMediaTypeTransform`` in ``handlers/rest.go``). A clause asking for
  anything else is skipped, not refused: the next clause gets its turn.
* No acceptable clause: 406 NotAcceptable, "only the following media types are accepted:
  ..." (``negotiation/errors.go``). An empty header means the first served type.

Whether the chosen conversion fits the request (a list asked for as a single
``PartialObjectMetadata``...) is decided later, by ``conversion.py``, as the apiserver's
``doTransformObject`` decides it after the negotiation.

The fake serves JSON only. kube-apiserver also serves YAML, protobuf and (behind a gate)
CBOR; a client asking for those alone gets the 406, whose message lists what *this* server
accepts. Every real client, kubectl and client-go's protobuf-first metadata client among
them, names ``application/json`` as a later clause and so is served.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from listwatch.testing import _status as status

JSON = "application/json"
#: What the fake serves: (type, subtype). JSON has a stream serializer (watch).
SERVED = (("application", "json"),)
META_GROUP = "meta.k8s.io"
META_VERSIONS = ("v1", "v1beta1")
PARTIAL = "PartialObjectMetadata"
PARTIAL_LIST = "PartialObjectMetadataList"
TABLE = "Table"


@dataclass(frozen=True)
class Conversion:
    """A representation asked for with ``as``/``g``/``v``: e.g. ``meta.k8s.io/v1`` Table."""

    group: str
    version: str
    kind: str

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


@dataclass(frozen=True)
class MediaType:
    """The outcome of negotiation: JSON, maybe converted. ``pretty`` only changes spacing."""

    conversion: Conversion | None = None
    pretty: bool = False


@dataclass(frozen=True)
class _Clause:
    type: str
    subtype: str
    q: float
    params: dict[str, str]


def negotiate(accept: str, allows: Callable[[Conversion], bool]) -> MediaType:
    """The representation to serve for ``accept``; 406 NotAcceptable when there is none.

    ``allows`` is the endpoint's ``AllowsMediaTypeTransform``: which conversions it makes.
    """
    media_type = negotiate_or_none(accept, allows)
    if media_type is None:
        raise not_acceptable_media_types()
    return media_type


def negotiate_or_none(accept: str, allows: Callable[[Conversion], bool]) -> MediaType | None:
    """As :func:`negotiate`, ``None`` instead of the 406 (discovery tries twice)."""
    if not accept:
        return MediaType()
    for clause in _parse_accept(accept):
        if not _matches_served(clause):
            continue
        media_type = _acceptable(clause.params, allows)
        if media_type is not None:
            return media_type
    return None


def resource_conversions(*, tables: bool) -> Callable[[Conversion], bool]:
    """``RequestScope.AllowsMediaTypeTransform``: PartialObjectMetadata(List), and Table
    when the resource has a table convertor (kube-apiserver skips the clause otherwise)."""

    def allows(conversion: Conversion) -> bool:
        if conversion.group != META_GROUP or conversion.version not in META_VERSIONS:
            return False
        if conversion.kind == TABLE:
            return tables
        return conversion.kind in (PARTIAL, PARTIAL_LIST)

    return allows


def not_acceptable_media_types() -> status.StatusError:
    """``errNotAcceptable``: 406 naming the media types the server can serve."""
    served = ", ".join(f"{t}/{s}" for t, s in SERVED)
    return status.failure(
        406, f"only the following media types are accepted: {served}", reason="NotAcceptable"
    )


def _parse_accept(header: str) -> list[_Clause]:
    """``goautoneg.ParseAccept``: clauses by ``q``, concrete types before wildcards."""
    clauses: list[_Clause] = []
    for part in header.split(","):
        pieces = part.strip(" ").split(";")
        media_range = pieces[0].split("/")
        main = media_range[0].strip(" ")
        if len(media_range) == 1 and main == "*":
            sub = "*"
        elif len(media_range) == 2:
            sub = media_range[1].strip(" ")
        else:
            continue  # not a media range: goautoneg drops it
        q = 1.0
        params: dict[str, str] = {}
        for param in pieces[1:]:
            key, sep, value = param.partition("=")
            if not sep:
                continue
            key = key.strip(" ")
            if key == "q":
                q = _parse_q(value)
            else:
                params[key] = value.strip(" ")
        clauses.append(_Clause(main, sub, q, params))
    clauses.sort(key=lambda c: (-c.q, c.type == "*", c.subtype == "*"))
    return clauses


def _parse_q(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        return 0.0  # strconv.ParseFloat's zero value on a syntax error


def _matches_served(clause: _Clause) -> bool:
    for main, sub in SERVED:
        if clause.type == main and clause.subtype in (sub, "*"):
            return True
        if clause.type == "*" and clause.subtype == "*":
            return True
    return False


def _acceptable(params: dict[str, str], allows: Callable[[Conversion], bool]) -> MediaType | None:
    """``acceptMediaTypeOptions`` + ``AllowsMediaTypeTransform`` for a JSON clause."""
    conversion: Conversion | None = None
    if {"as", "g", "v"} & params.keys():
        conversion = Conversion(params.get("g", ""), params.get("v", ""), params.get("as", ""))
    stream = params.get("stream", "")
    if stream and stream != "watch":
        return None
    server_version = params.get("sv", "")
    if server_version and server_version != "v1":
        return None
    if conversion is not None and not allows(conversion):
        return None
    return MediaType(conversion, pretty=params.get("pretty") == "1")
