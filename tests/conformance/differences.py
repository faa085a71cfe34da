"""Where the fake answers differently from the recorded kube-apiserver, and why that is accepted.

Each entry is listed, with its reason, in the module doc of ``listwatch.testing`` (its
``title`` appears there word for word: a test holds them together). A difference is
accepted only at the paths and in the exchanges named here; everything else about those
exchanges is still compared, and an entry that no longer matches any difference fails the
replay, so the list cannot outlive the differences it explains.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Accepted:
    """``paths`` match difference paths (``*`` for any text); ``exchanges`` match
    ``group/exchange`` names the same way."""

    title: str
    paths: tuple[str, ...]
    exchanges: tuple[str, ...] = ("*",)


DISCOVERY = ("main/discovery_*",)

ACCEPTED: tuple[Accepted, ...] = (
    Accepted("No metadata.generation", ("*.metadata.generation",)),
    Accepted(
        "A pod is deleted in one write",
        (
            "response.body.metadata.deletion*",
            "response.events[0].type",
            "response.events[0].object.metadata.deletion*",
        ),
        ("main/delete_pod", "main/watch_pods_deletion"),
    ),
    Accepted(
        "No Table output",
        ("response.body*", "response.events[*].object*"),
        ("main/*kubectl_table",),
    ),
    Accepted("No deletecollection", ("*.verbs*",), DISCOVERY),
    Accepted("No subresources", ("*.subresources",), DISCOVERY),
    Accepted(
        "A watch from a compacted RV is 410 at once",
        ("response.events*",),
        ("main/watch_pods_from_compacted_rv",),
    ),
    Accepted(
        "/version names the fake",
        ("response.body.gitVersion", "response.body.gitCommit", "response.body.goVersion"),
        ("main/version",),
    ),
)
