"""A verdict on a mirror: is it equal to the cluster, object by object?

"The counts match" proves little (a missing pod and a resurrected one cancel out), and
"the resourceVersions match" does not prove the stored bodies are the right ones. So the
comparison is by key, then by resourceVersion, then by the whole object, and it also checks
the mirror's sync state: the point it claims to be current at must be the server's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from listwatch._models import JsonObject, resource_version_of

if TYPE_CHECKING:
    from listwatch.sinks.sqlite import Mirror

#: How many keys of each kind of difference the verdict names.
SHOWN = 5


@dataclass(frozen=True, slots=True)
class Comparison:
    """The differences between a cluster's objects and a mirror of them."""

    cluster_objects: int
    mirror_objects: int
    cluster_rv: str
    mirror_rv: str | None
    missing: list[str] = field(default_factory=list)
    """Keys the cluster has and the mirror lacks."""
    extra: list[str] = field(default_factory=list)
    """Keys the mirror holds that the cluster does not (deleted, never removed)."""
    stale: list[str] = field(default_factory=list)
    """Keys whose resourceVersion differs: ``"key (cluster RV, mirror RV)"``."""
    different: list[str] = field(default_factory=list)
    """Keys with the same resourceVersion but a different body."""

    @property
    def equal(self) -> bool:
        return (
            not (self.missing or self.extra or self.stale or self.different)
            and self.mirror_rv == self.cluster_rv
        )

    def problems(self) -> list[str]:
        """One line per kind of difference, naming a few keys."""
        lines = []
        for label, keys in (
            ("missing from the mirror", self.missing),
            ("in the mirror but deleted in the cluster", self.extra),
            ("with a stale resourceVersion", self.stale),
            ("with a different body at the same resourceVersion", self.different),
        ):
            if keys:
                shown = ", ".join(keys[:SHOWN]) + (", ..." if len(keys) > SHOWN else "")
                lines.append(f"{len(keys)} {label}: {shown}")
        if self.mirror_rv != self.cluster_rv:
            lines.append(
                f"the mirror's sync state is at resourceVersion {self.mirror_rv}, "
                f"the server at {self.cluster_rv}"
            )
        return lines


def compare(cluster: Mapping[str, JsonObject], cluster_rv: str, mirror: Mirror) -> Comparison:
    """Compare ``cluster`` (key -> object) at ``cluster_rv`` with a mirror read from SQLite."""
    mirrored = mirror.objects
    comparison = Comparison(
        cluster_objects=len(cluster),
        mirror_objects=len(mirrored),
        cluster_rv=cluster_rv,
        mirror_rv=None if mirror.state is None else mirror.state.resource_version,
    )
    comparison.missing.extend(sorted(cluster.keys() - mirrored.keys()))
    comparison.extra.extend(sorted(mirrored.keys() - cluster.keys()))
    for key in sorted(cluster.keys() & mirrored.keys()):
        want, have = cluster[key], mirrored[key]
        want_rv, have_rv = resource_version_of(want), resource_version_of(have)
        if want_rv != have_rv:
            comparison.stale.append(f"{key} ({want_rv}, {have_rv})")
        elif want != have:
            comparison.different.append(key)
    return comparison
