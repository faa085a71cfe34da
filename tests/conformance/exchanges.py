"""The conformance script: what is asked of the server, in which order, by which client.

Two groups, one per server configuration: ``main`` (kube-apiserver with its default flags:
WatchList on) and ``watchlist-off`` (``--feature-gates=WatchList=false``). Each sets up its
own namespace through the API, then sends the requests that listwatch, kubectl and the
official client send. Objects are written fully defaulted (a Pod exactly as the real
server would complete it) so that both servers store the same object and a body can be
compared field by field.
"""

from __future__ import annotations

from typing import Any

from tests.conformance.script import (
    AGGREGATED_DISCOVERY,
    HUGE_RV,
    JSON,
    METADATA,
    METADATA_LIST,
    TABLE,
    Compact,
    Exchange,
    Group,
    PrepareNamespace,
    Ref,
    Relation,
    ShardAround,
    WatchRead,
)

PODS = "/api/v1/namespaces/{ns}/pods"
CONFIGMAPS = "/api/v1/namespaces/{ns}/configmaps"
LEASES = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"
MERGE_PATCH = "application/merge-patch+json"
#: A MicroTime as a leader elector writes it (docs/kubernetes-semantics.md#leases).
ACQUIRED = "2026-01-01T00:00:00.000000Z"
RENEWED = "2026-01-01T00:00:10.000000Z"

RESPONSE_RV = "response.body.metadata.resourceVersion"
REQUEST_RV = "request.query.resourceVersion"


def pod(name: str, app: str) -> dict[str, Any]:
    """A Pod as kube-apiserver 1.36 stores it once its defaults and admission are applied
    (no service account token volume: ``automountServiceAccountToken: false``)."""
    not_ready, unreachable = (
        {
            "key": f"node.kubernetes.io/{taint}",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 300,
        }
        for taint in ("not-ready", "unreachable")
    )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": app}},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "registry.example/app:1",
                    "resources": {},
                    "terminationMessagePath": "/dev/termination-log",
                    "terminationMessagePolicy": "File",
                    "imagePullPolicy": "IfNotPresent",
                }
            ],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "serviceAccountName": "default",
            "serviceAccount": "default",
            "automountServiceAccountToken": False,
            "securityContext": {},
            "schedulerName": "default-scheduler",
            "tolerations": [not_ready, unreachable],
            "priority": 0,
            "enableServiceLinks": True,
            "preemptionPolicy": "PreemptLowerPriority",
        },
        "status": {"phase": "Pending", "qosClass": "BestEffort"},
    }


def configmap(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "labels": {"app": "web"}},
        "data": {"key": "value"},
    }


def lease(holder: str, renewed: str, rv: Any = None, name: str = "leader") -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "namespace": "{ns}"}
    if rv is not None:
        metadata["resourceVersion"] = rv
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": metadata,
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": 15,
            "acquireTime": ACQUIRED,
            "renewTime": renewed,
            "leaseTransitions": 0,
        },
    }


def create(name: str, path: str, body: dict[str, Any], *, record: bool = False) -> Exchange:
    return Exchange(
        name, "POST", path, body=body, content_type=JSON, client="official", record=record
    )


def list_pods(name: str, *query: tuple[str, Any], **kwargs: Any) -> Exchange:
    return Exchange(name, "GET", PODS, query=tuple(query), **kwargs)


def watch_pods(name: str, *query: tuple[str, Any], read: WatchRead, **kwargs: Any) -> Exchange:
    return Exchange(name, "GET", PODS, query=(("watch", "true"), *query), read=read, **kwargs)


def streaming_list(*query: tuple[str, Any]) -> tuple[tuple[str, Any], ...]:
    """listwatch's streaming-list query (``_kube/resource.py``)."""
    return (
        *query,
        ("sendInitialEvents", "true"),
        ("resourceVersionMatch", "NotOlderThan"),
        ("allowWatchBookmarks", "true"),
    )


FIRST_RV = Ref("list_pods", "metadata.resourceVersion")
PAGE1_CONTINUE = Ref("list_pods_page1", "metadata.continue")
INITIAL_END = WatchRead("initial-events-end")

# ----------------------------------------------------------------------------- main

SETUP = (
    create("create_namespace", "/api/v1/namespaces", {"metadata": {"name": "{ns}"}}, record=True),
    PrepareNamespace(),
    create("create_pod", PODS, pod("pod-a", "web"), record=True),
    create("create_pod_b", PODS, pod("pod-b", "web")),
    create("create_pod_c", PODS, pod("pod-c", "web")),
    create("create_pod_d", PODS, pod("pod-d", "db")),
    create("create_configmap", CONFIGMAPS, configmap("cm-a"), record=True),
)

DISCOVERY = (
    Exchange("version", "GET", "/version", client="kubectl"),
    Exchange("discovery_api", "GET", "/api", client="official"),
    Exchange("discovery_api_v1", "GET", "/api/v1", subsets=(("response.body.resources", "name"),)),
    Exchange("discovery_apis", "GET", "/apis", subsets=(("response.body.groups", "name"),)),
    Exchange("discovery_group", "GET", "/apis/coordination.k8s.io"),
    Exchange(
        "discovery_group_version",
        "GET",
        "/apis/coordination.k8s.io/v1",
        subsets=(("response.body.resources", "name"),),
    ),
    Exchange(
        "discovery_aggregated_api",
        "GET",
        "/api",
        query=(("timeout", "32s"),),
        client="kubectl",
        accept=AGGREGATED_DISCOVERY,
        subsets=(("response.body.items[].versions[].resources", "resource"),),
    ),
    Exchange(
        "discovery_aggregated_apis",
        "GET",
        "/apis",
        query=(("timeout", "32s"),),
        client="kubectl",
        accept=AGGREGATED_DISCOVERY,
        subsets=(
            ("response.body.items", "metadata.name"),
            ("response.body.items[].versions", "version"),
            ("response.body.items[].versions[].resources", "resource"),
        ),
    ),
)

LISTS = (
    list_pods("list_pods", ("limit", "500"), note="listwatch's first page: a consistent read"),
    list_pods(
        "list_pods_kubectl_table",
        ("limit", "500"),
        client="kubectl",
        accept=TABLE,
        note="kubectl get pods",
    ),
    list_pods(
        "list_pods_rv0_limit_ignored",
        ("limit", "2"),
        ("resourceVersion", "0"),
        note="RV 0 is served from the watch cache, which ignores limit",
    ),
    list_pods(
        "list_pods_exact",
        ("resourceVersion", FIRST_RV),
        ("resourceVersionMatch", "Exact"),
        relations=(Relation(RESPONSE_RV, "==", REQUEST_RV),),
    ),
    list_pods(
        "list_pods_not_older_than",
        ("resourceVersion", FIRST_RV),
        ("resourceVersionMatch", "NotOlderThan"),
        relations=(Relation(REQUEST_RV, "<=", RESPONSE_RV),),
    ),
    list_pods("list_pods_page1", ("limit", "2")),
    list_pods("list_pods_page2", ("limit", "2"), ("continue", PAGE1_CONTINUE)),
    list_pods(
        "list_pods_legacy_exact_page",
        ("limit", "3"),
        ("resourceVersion", FIRST_RV),
        note="RV X with a limit and no resourceVersionMatch is an exact read",
        relations=(Relation(RESPONSE_RV, "==", REQUEST_RV),),
    ),
    list_pods(
        "list_pods_selector_page",
        ("labelSelector", "app=web"),
        ("limit", "1"),
        note="no remainingItemCount with a selector",
    ),
    list_pods(
        "list_pods_continue_with_rv",
        ("limit", "2"),
        ("continue", PAGE1_CONTINUE),
        ("resourceVersion", FIRST_RV),
    ),
    list_pods("list_pods_rvm_without_rv", ("resourceVersionMatch", "NotOlderThan")),
    list_pods(
        "list_pods_rvm_exact_rv0", ("resourceVersion", "0"), ("resourceVersionMatch", "Exact")
    ),
    list_pods(
        "list_pods_rvm_unknown", ("resourceVersion", FIRST_RV), ("resourceVersionMatch", "Newest")
    ),
    list_pods("list_pods_rv_not_a_number", ("resourceVersion", "abc")),
    list_pods("list_pods_send_initial_events", ("sendInitialEvents", "true")),
    list_pods(
        "list_pods_rv_too_large",
        ("resourceVersion", HUGE_RV),
        note="the server waits 3 s for the RV, then gives up",
    ),
    Exchange(
        "list_pods_missing_namespace",
        "GET",
        "/api/v1/namespaces/{ns}-missing/pods",
        note="reads do not check that the namespace exists",
    ),
    list_pods("list_pods_metadata", accept=METADATA_LIST),
    list_pods("list_pods_metadata_page1", ("limit", "2"), accept=METADATA_LIST),
    list_pods(
        "list_pods_metadata_singular",
        accept="application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1",
    ),
    Exchange("get_pod", "GET", PODS + "/pod-a", client="official"),
    Exchange("get_pod_metadata", "GET", PODS + "/pod-a", accept=METADATA),
)

ERRORS = (
    Exchange("get_pod_not_found", "GET", PODS + "/pod-z", client="official"),
    Exchange("get_unknown_resource", "GET", "/api/v1/namespaces/{ns}/widgets"),
    Exchange("list_unknown_group", "GET", "/apis/example.com/v1/widgets"),
    Exchange("list_unknown_version", "GET", "/apis/coordination.k8s.io/v9/leases"),
    list_pods("list_pods_unauthorized", as_user="invalid"),
    list_pods("list_pods_forbidden", as_user="nobody"),
    watch_pods(
        "watch_pods_forbidden", ("allowWatchBookmarks", "true"), read=INITIAL_END, as_user="nobody"
    ),
    Exchange("get_pod_forbidden", "GET", PODS + "/pod-a", as_user="nobody"),
    Exchange(
        "discovery_apis_forbidden_user",
        "GET",
        "/apis",
        as_user="nobody",
        subsets=(("response.body.groups", "name"),),
    ),
    create("create_pod_exists", PODS, pod("pod-a", "web"), record=True),
    create(
        "create_configmap_invalid",
        CONFIGMAPS,
        {"metadata": {"name": "Not_A_DNS_Name"}, "data": {"key": "value"}},
        record=True,
    ),
    create(
        "create_namespace_invalid",
        "/api/v1/namespaces",
        {"metadata": {"name": "Not_A_Label"}},
        record=True,
    ),
    create("create_pod_cluster_scope", "/api/v1/pods", pod("pod-x", "web"), record=True),
    create(
        "create_pod_missing_namespace",
        "/api/v1/namespaces/{ns}-missing/pods",
        pod("pod-a", "web"),
        record=True,
    ),
    Exchange("delete_configmap", "DELETE", CONFIGMAPS + "/cm-a", client="kubectl"),
)

#: Writes after ``list_pods``: what a watch from its RV replays.
CHURN = (
    Exchange(
        "patch_pod",
        "PATCH",
        PODS + "/pod-a",
        content_type=MERGE_PATCH,
        body={"metadata": {"labels": {"tier": "front"}}},
        client="kubectl",
    ),
    create("create_pod_e", PODS, pod("pod-e", "web")),
)

#: A pod deleted after the watches above, and a watch from just before.
DELETION = (
    Exchange("delete_pod", "DELETE", PODS + "/pod-c", client="kubectl"),
    watch_pods(
        "watch_pods_deletion",
        (
            "resourceVersion",
            Ref("watch_pods_bookmark", "events[0].object.metadata.resourceVersion"),
        ),
        read=WatchRead("count", 1),
        note="kube-apiserver deletes a pod in two writes: deletionTimestamp, then the removal",
    ),
)

WATCHES = (
    watch_pods(
        "watch_pods_from_rv",
        ("resourceVersion", FIRST_RV),
        ("allowWatchBookmarks", "true"),
        read=WatchRead("count", 2),
        relations=(
            Relation(REQUEST_RV, "<", "response.events[0].object.metadata.resourceVersion"),
        ),
    ),
    watch_pods(
        "watch_pods_kubectl_table",
        ("resourceVersion", Ref("list_pods_kubectl_table", "metadata.resourceVersion")),
        read=WatchRead("count", 2),
        client="kubectl",
        accept=TABLE,
        note="kubectl get pods --watch",
    ),
    watch_pods(
        "watch_pods_metadata_from_rv",
        ("resourceVersion", FIRST_RV),
        ("allowWatchBookmarks", "true"),
        read=WatchRead("count", 2),
        accept=METADATA,
    ),
    watch_pods(
        "watch_pods_metadata_list_form",
        ("resourceVersion", FIRST_RV),
        ("timeoutSeconds", "5"),
        read=WatchRead("end"),
        accept=METADATA_LIST,
        note="the list form cannot encode a watch event: the stream ends before any",
    ),
    watch_pods(
        "watch_pods_bookmark",
        ("labelSelector", "app=web"),
        ("resourceVersion", Ref("create_pod_e", "metadata.resourceVersion")),
        ("allowWatchBookmarks", "true"),
        ("timeoutSeconds", "4"),
        read=WatchRead("bookmark", within=20.0),
        during=(create("create_pod_f", PODS, pod("pod-f", "db")),),
        note="a pod the selector filters out moves the watch's RV on: a bookmark follows",
    ),
    *DELETION,
    watch_pods(
        "watch_pods_official",
        ("timeoutSeconds", "1"),
        read=WatchRead("end"),
        client="official",
        note="RV unset: the current state as ADDED events (WatchList defaulting)",
    ),
    watch_pods(
        "watch_pods_rv_unset_bookmarks",
        ("allowWatchBookmarks", "true"),
        read=INITIAL_END,
        client="official",
        note="WatchList defaulting adds sendInitialEvents: the initial-events-end bookmark",
    ),
    watch_pods("streaming_list", *streaming_list(("timeoutSeconds", "300")), read=INITIAL_END),
    watch_pods(
        "streaming_list_metadata",
        *streaming_list(("timeoutSeconds", "300")),
        read=INITIAL_END,
        accept=METADATA,
    ),
    watch_pods(
        "streaming_list_not_older_than",
        *streaming_list(("resourceVersion", FIRST_RV)),
        read=INITIAL_END,
        relations=(
            Relation(REQUEST_RV, "<", "response.events[-1].object.metadata.resourceVersion"),
        ),
    ),
    watch_pods(
        "streaming_list_without_bookmarks",
        ("sendInitialEvents", "true"),
        ("resourceVersionMatch", "NotOlderThan"),
        ("timeoutSeconds", "1"),
        read=WatchRead("end"),
    ),
    watch_pods("streaming_list_without_rvm", ("sendInitialEvents", "true"), read=INITIAL_END),
    watch_pods(
        "streaming_list_rv_too_large",
        *streaming_list(("resourceVersion", HUGE_RV)),
        read=WatchRead("end"),
    ),
    watch_pods(
        "watch_pods_rv_too_large",
        ("resourceVersion", HUGE_RV),
        ("allowWatchBookmarks", "true"),
        ("timeoutSeconds", "2"),
        read=WatchRead("end"),
    ),
    watch_pods("watch_pods_rv_not_a_number", ("resourceVersion", "abc"), read=WatchRead("end")),
)

LEASE = (
    create("lease_create", LEASES, lease("candidate-a", ACQUIRED), record=True),
    Exchange("lease_get", "GET", LEASES + "/leader"),
    Exchange(
        "lease_renew",
        "PUT",
        LEASES + "/leader",
        body=lease("candidate-a", RENEWED, Ref("lease_get", "metadata.resourceVersion")),
        content_type=JSON,
        relations=(Relation("request.body.metadata.resourceVersion", "<", RESPONSE_RV),),
    ),
    Exchange(
        "lease_takeover_conflict",
        "PUT",
        LEASES + "/leader",
        body=lease("candidate-b", RENEWED, Ref("lease_create", "metadata.resourceVersion")),
        content_type=JSON,
        note="a candidate acting on what it read before the leader renewed",
    ),
    Exchange(
        "lease_update_without_rv",
        "PUT",
        LEASES + "/leader",
        body=lease("candidate-b", RENEWED),
        content_type=JSON,
    ),
    create("lease_create_exists", LEASES, lease("candidate-b", ACQUIRED), record=True),
    Exchange(
        "lease_put_creates",
        "PUT",
        LEASES + "/other",
        body=lease("candidate-a", ACQUIRED, name="other"),
        content_type=JSON,
    ),
    create(
        "lease_invalid",
        LEASES,
        {**lease("candidate-a", ACQUIRED, name="bad"), "spec": {"leaseDurationSeconds": 0}},
        record=True,
    ),
)

COMPACTION = (
    Compact(),
    list_pods(
        "list_pods_exact_compacted",
        ("resourceVersion", FIRST_RV),
        ("resourceVersionMatch", "Exact"),
        until_status=410,
    ),
    list_pods("list_pods_continue_expired", ("limit", "2"), ("continue", PAGE1_CONTINUE)),
    list_pods(
        "list_pods_continue_inconsistent",
        ("limit", "2"),
        ("continue", Ref("list_pods_continue_expired", "metadata.continue")),
        note="the token a 410 offers continues from the current state",
    ),
    watch_pods(
        "watch_pods_from_compacted_rv",
        ("resourceVersion", FIRST_RV),
        ("allowWatchBookmarks", "true"),
        ("timeoutSeconds", "2"),
        read=WatchRead("end"),
    ),
    watch_pods(
        "watch_pods_rv_too_old",
        ("resourceVersion", "1"),
        ("allowWatchBookmarks", "true"),
        ("timeoutSeconds", "2"),
        read=WatchRead("end"),
    ),
)

MAIN = Group(
    "main",
    "kube-apiserver with its default flags (WatchList on)",
    (*SETUP, *DISCOVERY, *LISTS, *ERRORS, *CHURN, *WATCHES, *LEASE, *COMPACTION),
    requires={"WatchList": True},
    needs_etcd=True,
    fake_options={"bookmark_interval": 0.2, "too_large_wait": 0.2},
)

WATCHLIST_OFF = Group(
    "watchlist-off",
    "kube-apiserver with the WatchList feature gate off",
    (
        create("create_namespace", "/api/v1/namespaces", {"metadata": {"name": "{ns}"}}),
        PrepareNamespace(),
        create("create_pod_a", PODS, pod("pod-a", "web")),
        create("create_pod_b", PODS, pod("pod-b", "web")),
        watch_pods(
            "streaming_list_gate_off", *streaming_list(("timeoutSeconds", "300")), read=INITIAL_END
        ),
        watch_pods(
            "watch_pods_rv_unset_bookmarks_gate_off",
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", "1"),
            read=WatchRead("end"),
            client="official",
            note="no WatchList defaulting: ADDED events, no initial-events-end bookmark",
        ),
    ),
    requires={"WatchList": False},
    server_args="--feature-gates=WatchList=false",
    fake_options={"watch_list": False, "bookmark_interval": 0.2},
)

# ----------------------------------------------------------------------------- sharding

ALL_PODS = "/api/v1/pods"
WHOLE_SPACE = "shardRange(object.metadata.uid, '0x0000000000000000', '0x10000000000000000')"
HALVES = (
    "shardRange(object.metadata.uid, '0x0000000000000000', '0x8000000000000000') || "
    "shardRange(object.metadata.uid, '0x8000000000000000', '0x10000000000000000')"
)
POD_A_UID = Ref("create_pod_a", "metadata.uid")
POD_B_UID = Ref("create_pod_b", "metadata.uid")
POD_C_UID = Ref("create_pod_c", "metadata.uid")
#: The shard holding exactly pod-a (its uid's hash): the same object on any server.
AROUND_A = ShardAround((POD_A_UID,))
AROUND_A_C = ShardAround((POD_A_UID, POD_C_UID))
#: Refusals: each of parser.go's checks, and the empty selector (a space: an empty
#: parameter is no parameter at all).
BAD_SELECTORS = {
    "empty": "   ",
    "short_bound": "shardRange(object.metadata.uid, '0x0', '0x8000000000000000')",
    "upper_case_hex": "shardRange(object.metadata.uid, '0x00000000000000AA', '0x8000000000000000')",
    "no_prefix": "shardRange(object.metadata.uid, '0000000000000000', '0x8000000000000000')",
    "too_long": "shardRange(object.metadata.uid, '0x0000000000000000', '0x100000000000000000')",
    "seventeen_digits": (
        "shardRange(object.metadata.uid, '0x0000000000000000', '0x20000000000000000')"
    ),
    "start_not_below_end": (
        "shardRange(object.metadata.uid, '0x8000000000000000', '0x8000000000000000')"
    ),
    "unsupported_field": (
        "shardRange(object.metadata.name, '0x0000000000000000', '0x8000000000000000')"
    ),
    "mixed_fields": (
        "shardRange(object.metadata.uid, '0x0000000000000000', '0x8000000000000000') || "
        "shardRange(object.metadata.namespace, '0x8000000000000000', '0x10000000000000000')"
    ),
    "two_arguments": "shardRange(object.metadata.uid, '0x0000000000000000')",
    "number_bound": "shardRange(object.metadata.uid, 0, '0x8000000000000000')",
    "quoted_field": "shardRange('object.metadata.uid', '0x0000000000000000', '0x8000000000000000')",
    "and": (
        "shardRange(object.metadata.uid, '0x0000000000000000', '0x8000000000000000') && "
        "shardRange(object.metadata.uid, '0x0000000000000000', '0x8000000000000000')"
    ),
    "identifier": "uid",
    "syntax": "shardRange((",
}


def patch_pod(name: str, pod_name: str, revision: str) -> Exchange:
    return Exchange(
        name,
        "PATCH",
        f"{PODS}/{pod_name}",
        body={"metadata": {"labels": {"rev": revision}}},
        content_type=MERGE_PATCH,
        client="official",
        record=False,
    )


SHARD_SETUP = (
    create("create_namespace", "/api/v1/namespaces", {"metadata": {"name": "{ns}"}}),
    PrepareNamespace(),
    create("create_pod_a", PODS, pod("pod-a", "web")),
    create("create_pod_b", PODS, pod("pod-b", "web")),
    create("create_pod_c", PODS, pod("pod-c", "web")),
)

SHARDING = Group(
    "sharding",
    "kube-apiserver with --feature-gates=ShardedListAndWatch=true (KEP-5866)",
    (
        *SHARD_SETUP,
        list_pods(
            "list_shard_of_pod_a",
            ("limit", "500"),
            ("shardSelector", AROUND_A),
            note="only the pod whose uid hashes into the range; the selector echoed",
        ),
        list_pods(
            "list_shard_whole_space",
            ("shardSelector", WHOLE_SPACE),
            note="the whole space, up to 0x10000000000000000 (2**64): every pod",
        ),
        list_pods(
            "list_shard_or_ranges",
            ("shardSelector", AROUND_A_C),
            note="ranges OR-ed: pod-a and pod-c; the echo joins them with ' || '",
        ),
        list_pods(
            "list_shard_halves_spaced",
            (
                "shardSelector",
                "  shardRange( object.metadata.uid ,'0x0000000000000000','0x8000000000000000' )"
                '||shardRange(object.metadata.uid, "0x8000000000000000", '
                "'0x10000000000000000')  ",
            ),
            note="the echo is the parsed selector written out, not the request's text",
        ),
        list_pods(
            "list_shard_page1",
            ("limit", "1"),
            ("shardSelector", AROUND_A_C),
            note="a shard's page: remainingItemCount counts every pod after the page start "
            "less the limit, in or out of the shard (the predicate's Empty() leaves the "
            "shard selector out)",
        ),
        list_pods(
            "list_shard_page2",
            ("limit", "1"),
            ("continue", Ref("list_shard_page1", "metadata.continue")),
            ("shardSelector", AROUND_A_C),
            note="the continue token carries no shard; the request does",
        ),
        list_pods(
            "list_shard_page_whole_space",
            ("limit", "2"),
            ("shardSelector", WHOLE_SPACE),
        ),
        Exchange(
            "list_shard_namespace_field",
            "GET",
            ALL_PODS,
            query=(
                (
                    "shardSelector",
                    ShardAround(
                        (Ref("create_namespace", "metadata.name"),), "object.metadata.namespace"
                    ),
                ),
            ),
            note="object.metadata.namespace: every pod of the run's namespace, from all",
        ),
        list_pods(
            "list_shard_metadata_only",
            ("shardSelector", HALVES),
            accept=METADATA_LIST,
            note="PartialObjectMetadataList keeps resourceVersion and continue, not shardInfo",
        ),
        list_pods(
            "list_shard_empty_parameter",
            ("shardSelector", ""),
            note="an empty shardSelector is no selector: no echo",
        ),
        *(
            list_pods(f"list_shard_refused_{name}", ("shardSelector", text))
            for name, text in BAD_SELECTORS.items()
        ),
        watch_pods(
            "watch_shard_refused",
            ("shardSelector", BAD_SELECTORS["short_bound"]),
            ("resourceVersion", Ref("list_shard_whole_space", "metadata.resourceVersion")),
            read=WatchRead("end"),
            note="a watch is refused as a list is: 500 before the stream",
        ),
        watch_pods(
            "streaming_list_shard",
            *streaming_list(("shardSelector", AROUND_A), ("timeoutSeconds", "300")),
            read=INITIAL_END,
            note="only the shard's objects as initial events, then initial-events-end",
        ),
        watch_pods(
            "watch_shard",
            ("resourceVersion", Ref("list_shard_whole_space", "metadata.resourceVersion")),
            ("shardSelector", AROUND_A),
            ("timeoutSeconds", "300"),
            read=WatchRead("count", 1),
            during=(patch_pod("patch_pod_b", "pod-b", "2"), patch_pod("patch_pod_a", "pod-a", "2")),
            note="pod-b changes first, outside the shard: the first event is pod-a's",
        ),
    ),
    requires={"ShardedListAndWatch": True},
    server_args="--feature-gates=ShardedListAndWatch=true",
    fake_options={"bookmark_interval": 0.2},
)

SHARDING_OFF = Group(
    "sharding-off",
    "kube-apiserver 1.36 without the ShardedListAndWatch gate (its default)",
    (
        *SHARD_SETUP,
        list_pods(
            "list_shard_gate_off",
            ("shardSelector", AROUND_A),
            note="the parameter is ignored: every pod, no shardInfo",
        ),
        list_pods(
            "list_shard_refused_gate_off",
            ("shardSelector", BAD_SELECTORS["syntax"]),
            note="not even parsed: a bad selector is no error",
        ),
        watch_pods(
            "streaming_list_shard_gate_off",
            *streaming_list(("shardSelector", AROUND_A), ("timeoutSeconds", "300")),
            read=INITIAL_END,
            note="every pod as initial events",
        ),
    ),
    requires={"ShardedListAndWatch": False},
    fake_options={"sharding": False, "bookmark_interval": 0.2},
)

GROUPS = {group.name: group for group in (MAIN, WATCHLIST_OFF, SHARDING, SHARDING_OFF)}
