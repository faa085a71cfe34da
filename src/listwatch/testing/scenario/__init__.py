"""Scenarios over the fake API server: realistic objects, churn, faults, and a verdict.

One package serves the demo (``listwatch demo``), the chaos suite and the benchmarks, so a
pod, a churn and a fault mean the same everywhere:

* pods: :class:`PodFactory` (a churning cluster's pods) and :func:`numbered_pod` (pod ``i``
  of a fixed cluster, its bytes pinned so that benchmark results stay comparable);
* workloads: :class:`PodWorkload` (realistic pods under realistic churn) and
  :class:`ConfigMapWorkload` (every kind of write, each told to a :class:`WriteLog`);
* faults: :class:`FaultInjector` injects the catalogue's classes by name, as the chaos suite
  draws them (grouped in :data:`LIST_FAULTS`, :data:`WATCH_ERRORS`, :data:`CUTS`,
  :data:`COMPACTION`, :data:`ALL_FAULTS`), or as the demo's episodes on a timer
  (:func:`demo_faults`: a :class:`FaultSchedule` of :data:`DEMO_EPISODES`); :func:`blackout`
  makes every request fail; :class:`FlakyReceiver` fails a receiver on demand;
* the verdict: :func:`compare` holds a mirror against the cluster, object by object.

It sits above the fake server: ``import listwatch.testing`` does not import it.
"""

from __future__ import annotations

from listwatch.testing.scenario._faults import (
    ALL_FAULTS,
    COMPACTION,
    CUTS,
    DEMO_EPISODES,
    LIST_FAULTS,
    WATCH_ERRORS,
    FaultInjector,
    FaultSchedule,
    FaultSettings,
    FlakyReceiver,
    ReceiverDown,
    blackout,
    demo_faults,
)
from listwatch.testing.scenario._pods import (
    NUMBERED_POD_NAMESPACES,
    PodFactory,
    namespace_names,
    numbered_pod,
)
from listwatch.testing.scenario._verify import Comparison, compare
from listwatch.testing.scenario._workload import (
    Churn,
    ChurnCounts,
    ConfigMapWorkload,
    PodWorkload,
    WriteLog,
    configmap,
)

__all__ = [
    "ALL_FAULTS",
    "COMPACTION",
    "CUTS",
    "DEMO_EPISODES",
    "LIST_FAULTS",
    "NUMBERED_POD_NAMESPACES",
    "WATCH_ERRORS",
    "Churn",
    "ChurnCounts",
    "Comparison",
    "ConfigMapWorkload",
    "FaultInjector",
    "FaultSchedule",
    "FaultSettings",
    "FlakyReceiver",
    "PodFactory",
    "PodWorkload",
    "ReceiverDown",
    "WriteLog",
    "blackout",
    "compare",
    "configmap",
    "demo_faults",
    "namespace_names",
    "numbered_pod",
]
