"""Prometheus metrics for Syncers (and their leader election), fed by the events they emit.

``SyncMetrics`` owns a ``CollectorRegistry`` (its own by default, so an app that embeds
listwatch keeps its process-wide registry as it was; pass ``REGISTRY`` to share it). Each
Syncer handed to ``track`` gets an observer that turns its events into counters and
histograms; the gauges (queue depth, pending keys, snapshot size, staleness) are read from
the tracked Syncers' status when Prometheus scrapes, so they cost nothing in between.

Every series is labelled by the resource as Kubernetes names it: ``group`` (``""`` for the
core API, as kube-apiserver's own metrics do), ``version``, ``resource``. Leader election
exports controller-runtime's ``leader_election_master_status{name}``.

A sharded agent (``SyncMetrics(shard_label=True)``) adds a ``shard`` label (``2/4``) to every
Syncer series, bounded by the shard count, and exports ``listwatch_shards_held``,
``listwatch_shard_fair_share`` and ``listwatch_live_replicas`` (what the replica holds, at
most it may hold, and how many replicas it counts), plus one
``leader_election_master_status{name="<lease>-shard-<i>"}`` per shard Lease.

Counters and histograms (labels ``group``, ``version``, ``resource``, plus those named):

- ``listwatch_generations_total``: generations started (a LIST or streaming list each);
- ``listwatch_restarts_total{reason}``: generations ended, by error class (``resync``: timer);
- ``listwatch_events_received_total``: watch events delivered to the receiver, pre-merge;
- ``listwatch_batches_total``, ``listwatch_keys_delivered_total``: batches and their keys;
- ``listwatch_snapshot_objects_delivered_total``: objects in the snapshots taken;
- ``listwatch_on_list_duration_seconds``, ``listwatch_on_batch_duration_seconds``: receiver
  calls (``on_list`` includes the listing it reads);
- ``listwatch_requests_total{verb,outcome}``: LIST pages and WATCH requests, by ``ok`` or
  the error class;
- ``listwatch_backpressure_total``: times the watch waited for room in a full queue;
- ``listwatch_objects_quarantined_total``: objects the receiver kept as bytes, not as JSON,
  each time it wrote one (docs/architecture.md#quarantined-objects).

Gauges, read at scrape time: ``listwatch_queue_depth``, ``listwatch_pending_keys``,
``listwatch_snapshot_objects``, ``listwatch_staleness_seconds`` (since the receiver last
caught up; 0 while it has everything), ``listwatch_synced``, ``listwatch_served`` (0 once
the server stopped serving a synced resource: its CRD was deleted), ``listwatch_epoch``,
``listwatch_quarantined_objects`` (the objects the receiver holds as bytes, not as JSON), and
``leader_election_master_status{name}`` (1 while this replica leads).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector

from listwatch._models import GroupVersionResource
from listwatch.observe import _events as observe

if TYPE_CHECKING:
    from listwatch._syncer import Syncer

__all__ = ["CONTENT_TYPE_LATEST", "SyncMetrics"]

RESOURCE_LABELS = ("group", "version", "resource")
_CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


def resource_labels(resource: GroupVersionResource | None) -> tuple[str, str, str]:
    if resource is None:
        return ("", "", "custom")
    return (resource.group, resource.version, resource.resource)


class SyncMetrics:
    """Prometheus series for the Syncers it tracks, in ``registry``."""

    def __init__(
        self, registry: CollectorRegistry | None = None, *, shard_label: bool = False
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        labels = (*RESOURCE_LABELS, "shard") if shard_label else RESOURCE_LABELS
        self._shard_label = shard_label
        self._generations = Counter(
            "listwatch_generations", "Generations started.", labels, registry=self.registry
        )
        self._restarts = Counter(
            "listwatch_restarts",
            "Generations ended, by reason (the error class, or resync).",
            (*labels, "reason"),
            registry=self.registry,
        )
        self._events = Counter(
            "listwatch_events_received",
            "Watch events delivered to the receiver, before merging.",
            labels,
            registry=self.registry,
        )
        self._batches = Counter(
            "listwatch_batches", "on_batch calls that returned.", labels, registry=self.registry
        )
        self._keys = Counter(
            "listwatch_keys_delivered",
            "Keys (objects) in the batches delivered.",
            labels,
            registry=self.registry,
        )
        self._snapshot_objects = Counter(
            "listwatch_snapshot_objects_delivered",
            "Objects in the snapshots the receiver took.",
            labels,
            registry=self.registry,
        )
        self._on_list = Histogram(
            "listwatch_on_list_duration_seconds",
            "Duration of on_list calls, the listing they read included.",
            labels,
            buckets=_CALL_BUCKETS,
            registry=self.registry,
        )
        self._on_batch = Histogram(
            "listwatch_on_batch_duration_seconds",
            "Duration of on_batch calls.",
            labels,
            buckets=_CALL_BUCKETS,
            registry=self.registry,
        )
        self._backpressure = Counter(
            "listwatch_backpressure",
            "Times the watch reader waited for room in a full queue (the receiver is slower).",
            labels,
            registry=self.registry,
        )
        self._quarantined = Counter(
            "listwatch_objects_quarantined",
            "Objects the receiver kept as bytes, not as JSON (it could not store them as "
            "they are), each time it wrote one.",
            labels,
            registry=self.registry,
        )
        self._requests = Counter(
            "listwatch_requests",
            "LIST pages and WATCH requests, by outcome (ok, or the error class).",
            (*labels, "verb", "outcome"),
            registry=self.registry,
        )
        self._gauges = _StatusGauges(labels)
        self.registry.register(self._gauges)

    def _labels(self, syncer: Syncer, shard: str | None) -> tuple[str, ...]:
        labels = resource_labels(syncer.source.resource)
        return (*labels, shard or "") if self._shard_label else labels

    def track(self, syncer: Syncer, *, shard: str | None = None) -> None:
        """Count ``syncer``'s events from now on, and read its gauges at each scrape.

        Call it before the Syncer runs. A Syncer for a resource already tracked replaces the
        old one in the gauges (a new leader's term builds new Syncers); counters go on.

        The labels are read from the Syncer's source at each event and each scrape, not
        once here: a source named as kubectl names it (``ListWatch.from_client(api, "po")``)
        learns its group and version from discovery when the Syncer first runs. ``shard``
        (its name, ``2/4``) is the ``shard`` label's value when the metrics have one.
        """
        counters: dict[tuple[str, ...], observe.Observer] = {}

        def observer(event: observe.SyncEvent) -> None:
            labels = self._labels(syncer, shard)
            count = counters.get(labels)
            if count is None:
                count = counters[labels] = self._observer(labels)
            count(event)

        syncer.add_observer(observer)
        self._gauges.tracked.append((syncer, lambda: self._labels(syncer, shard)))

    def forget(self, syncer: Syncer) -> None:
        """Stop reading ``syncer``'s gauges (it will not run again)."""
        self._gauges.tracked = [t for t in self._gauges.tracked if t[0] is not syncer]

    def track_shares(self, shares: Callable[[], tuple[int, int, int]]) -> None:
        """Export ``listwatch_shards_held``, ``listwatch_shard_fair_share`` and
        ``listwatch_live_replicas`` from ``shares()`` (held, fair share, live replicas)."""
        self._gauges.shares = shares

    def track_leader(self, name: str, leading: Callable[[], bool]) -> None:
        """Export ``leader_election_master_status{name}``: 1 while ``leading()``."""
        self._gauges.leaders[name] = leading

    def render(self) -> bytes:
        """The exposition text (``CONTENT_TYPE_LATEST``) of every series."""
        return generate_latest(self.registry)

    def _observer(self, labels: tuple[str, ...]) -> observe.Observer:
        generations = self._generations.labels(*labels)
        events = self._events.labels(*labels)
        batches = self._batches.labels(*labels)
        keys = self._keys.labels(*labels)
        snapshot_objects = self._snapshot_objects.labels(*labels)
        on_list = self._on_list.labels(*labels)
        on_batch = self._on_batch.labels(*labels)
        backpressure = self._backpressure.labels(*labels)
        quarantined = self._quarantined.labels(*labels)

        def observer(event: observe.SyncEvent) -> None:
            match event:
                case observe.GenerationStarted():
                    generations.inc()
                case observe.BatchDelivered(keys=delivered, received=received, seconds=took):
                    batches.inc()
                    keys.inc(delivered)
                    events.inc(received)
                    on_batch.observe(took)
                    quarantined.inc(len(event.quarantined))
                case observe.SnapshotDelivered(objects=objects, seconds=took):
                    snapshot_objects.inc(objects)
                    on_list.observe(took)
                    quarantined.inc(len(event.quarantined))
                case observe.ReceiverFailed(call=call, seconds=took):
                    (on_list if call == "on_list" else on_batch).observe(took)
                case observe.QueueFull():
                    backpressure.inc()
                case observe.GenerationEnded(reason=reason):
                    self._restarts.labels(*labels, reason).inc()
                case observe.RequestDone(verb=verb, outcome=outcome):
                    self._requests.labels(*labels, verb, outcome).inc()
                case _:
                    pass

        return observer


class _StatusGauges(Collector):
    """The gauges, read from the tracked Syncers' status when Prometheus scrapes."""

    def __init__(self, labels: tuple[str, ...]) -> None:
        self.labels = labels
        self.tracked: list[tuple[Syncer, Callable[[], tuple[str, ...]]]] = []
        self.leaders: dict[str, Callable[[], bool]] = {}
        self.shares: Callable[[], tuple[int, int, int]] | None = None

    def current(self) -> dict[tuple[str, ...], Syncer]:
        """The tracked Syncers by their labels now, the last tracked for a resource (and
        shard) winning; the Syncers it replaced are dropped."""
        by_labels = {labels(): (syncer, labels) for syncer, labels in self.tracked}
        self.tracked = list(by_labels.values())
        return {labels: syncer for labels, (syncer, _) in by_labels.items()}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        families = {
            "queue_depth": "Watch events queued, not yet merged.",
            "pending_keys": "Keys merged, not yet delivered.",
            "snapshot_objects": "Objects in the last snapshot.",
            "staleness_seconds": "Seconds since the receiver last caught up (0 while it has "
            "everything the watch received).",
            "synced": "1 while the receiver holds the current generation's snapshot.",
            "served": "0 from a 404 after the resource had synced (no longer served: its "
            "CRD was deleted) until it syncs again; else 1.",
            "epoch": "The fencing epoch the Syncer writes with.",
            "quarantined_objects": "Objects the receiver holds as bytes, not as JSON: it "
            "could not store them as they are (they are kept, and named in /readyz).",
        }
        gauges = {
            name: GaugeMetricFamily(f"listwatch_{name}", text, labels=self.labels)
            for name, text in families.items()
        }
        for labels, syncer in self.current().items():
            status = syncer.status
            values = {
                "queue_depth": status.queued_events,
                "pending_keys": status.pending_keys,
                "snapshot_objects": status.snapshot_size or 0,
                "staleness_seconds": status.staleness,
                "synced": 1.0 if status.synced else 0.0,
                "served": 1.0 if status.served else 0.0,
                "epoch": syncer.epoch,
                "quarantined_objects": len(status.quarantined),
            }
            for name, value in values.items():
                gauges[name].add_metric(list(labels), float(value))
        yield from gauges.values()
        leader = GaugeMetricFamily(
            "leader_election_master_status",
            "1 while this replica is the leader of the named lease.",
            labels=("name",),
        )
        for name, leading in self.leaders.items():
            leader.add_metric([name], 1.0 if leading() else 0.0)
        yield leader
        if self.shares is not None:
            held, share, live = self.shares()
            for name, text, value in (
                ("shards_held", "Shard Leases this replica holds.", held),
                (
                    "shard_fair_share",
                    "The most shards this replica may hold: ceil(shards / live replicas).",
                    share,
                ),
                (
                    "live_replicas",
                    "Replicas alive by their presence Leases, this one included.",
                    live,
                ),
            ):
                family = GaugeMetricFamily(f"listwatch_{name}", text)
                family.add_metric([], float(value))
                yield family

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())
