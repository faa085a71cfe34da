"""Converting a response to the representation negotiated from ``Accept`` (PartialObjectMetadata).

After negotiation (``negotiation.py``) kube-apiserver converts what storage returned in
``doTransformObject`` (apiserver ``pkg/endpoints/handlers/response.go``):

* ``PartialObjectMetadataList`` of a list: a ``meta.k8s.io/<v>`` ``PartialObjectMetadataList``
  whose list metadata keeps ``resourceVersion``, ``continue`` and ``remainingItemCount``
  and whose every item is ``{"kind": "PartialObjectMetadata", "apiVersion":
  "meta.k8s.io/<v>", "metadata": <the whole ObjectMeta>}`` (``asPartialObjectMetadataList``,
  ``meta.AsPartialObjectMetadata``). The converted list is built afresh, so an empty one has
  ``"items": null``: ``Items`` stays a nil slice, and the meta codecs encode it with
  ``encoding/json`` (apimachinery ``metav1.PartialObjectMetadataList`` has no ``omitempty``
  on ``items``).
* ``PartialObjectMetadata`` of one object (GET, a write's answer, a watch event's object,
  bookmarks included): the same ``{"kind", "apiVersion", "metadata"}``.
* ``PartialObjectMetadata`` of a list, or ``PartialObjectMetadataList`` of one object: 406
  NotAcceptable, "you requested PartialObjectMetadata, but the requested object is a list
  (*core.PodList)" (the Go type of the *internal* object, as ``%T`` prints it).
* A ``Status`` (a DELETE's answer, an ERROR event) is never converted.

WATCH is the exception that makes a real quirk: each event's object goes through the same
conversion, but a failure is only logged (``watchEmbeddedEncoder.doEncode``) and the
unconverted object is handed to the *meta* encoder, which cannot encode a Pod or a custom
resource; ``WatchServer.HandleHTTP`` then returns on "Failed to encode watch event". So a
watch asking for ``as=PartialObjectMetadataList`` gets 200 and its headers, and its stream
ends cleanly, without an event, when the first event (a bookmark included) is due. That is
:class:`EndStream` here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from listwatch.testing import _negotiation as negotiation
from listwatch.testing import _status as status
from listwatch.testing._negotiation import Conversion, MediaType
from listwatch.testing._resources import ResourceType

JsonDict = dict[str, Any]


class EndStream(Exception):
    """A watch event cannot be encoded as asked: the stream ends cleanly before it."""


@dataclass(frozen=True)
class Converter:
    """Converts the bodies of one request to its negotiated :class:`MediaType`."""

    media_type: MediaType
    resource: ResourceType

    @property
    def conversion(self) -> Conversion | None:
        return self.media_type.conversion

    def list_body(self, body: JsonDict) -> JsonDict:
        """A LIST response (``<Kind>List``) as negotiated."""
        conversion = self.conversion
        if conversion is None:
            return body
        if conversion.kind == negotiation.PARTIAL_LIST:
            return partial_list(body, conversion.api_version)
        if conversion.kind == negotiation.PARTIAL:
            raise _not_acceptable(
                "you requested PartialObjectMetadata, but the requested object is a list "
                f"({internal_type(self.resource, is_list=True)})"
            )
        raise _unsupported(conversion)

    def object_body(self, obj: JsonDict) -> JsonDict:
        """One object (GET, or the answer to a write) as negotiated; a Status as is."""
        conversion = self.conversion
        if conversion is None or obj.get("kind") == "Status":
            return obj
        if conversion.kind == negotiation.PARTIAL:
            return partial_object(obj, conversion.api_version)
        if conversion.kind == negotiation.PARTIAL_LIST:
            raise _not_acceptable(
                "you requested PartialObjectMetadataList, but the requested object is not a "
                f"list ({internal_type(self.resource, is_list=False)})"
            )
        raise _unsupported(conversion)

    def watch_object(self, obj: JsonDict) -> JsonDict:
        """A watch event's object as negotiated; raises :class:`EndStream` (see the module)."""
        try:
            return self.object_body(obj)
        except status.StatusError:
            raise EndStream from None


def partial_object(obj: JsonDict, api_version: str) -> JsonDict:
    """``meta.AsPartialObjectMetadata``: the object's whole ``metadata``, nothing else."""
    return {
        "kind": negotiation.PARTIAL,
        "apiVersion": api_version,
        "metadata": obj.get("metadata", {}),
    }


def partial_list(body: JsonDict, api_version: str) -> JsonDict:
    """``asPartialObjectMetadataList``: list metadata kept, items reduced to metadata."""
    items = [partial_object(item, api_version) for item in body.get("items") or ()]
    metadata = body.get("metadata", {})
    kept = {
        key: metadata[key]
        for key in ("resourceVersion", "continue", "remainingItemCount")
        if metadata.get(key) not in (None, "")
    }
    return {
        "kind": negotiation.PARTIAL_LIST,
        "apiVersion": api_version,
        "metadata": kept,
        "items": items or None,
    }


def internal_type(resource: ResourceType, *, is_list: bool) -> str:
    """The Go type of the internal object, as ``%T`` prints it: ``*core.PodList``.

    Built-in resources live in internal packages named after their group (``core`` for
    the core group, ``apps``, ``coordination``...); custom resources are unstructured.
    """
    if not resource.builtin:
        return "*unstructured.UnstructuredList" if is_list else "*unstructured.Unstructured"
    package = resource.group.split(".")[0] if resource.group else "core"
    return f"*{package}.{resource.kind}{'List' if is_list else ''}"


def _not_acceptable(message: str) -> status.StatusError:
    """``errNotAcceptable`` of ``response.go``: no details, reason NotAcceptable."""
    return status.failure(406, message, reason="NotAcceptable")


def _unsupported(conversion: Conversion) -> status.StatusError:
    """A conversion negotiation let through that this server cannot make (never Table)."""
    return _not_acceptable(f"no {conversion.kind} exists in group version {conversion.api_version}")
