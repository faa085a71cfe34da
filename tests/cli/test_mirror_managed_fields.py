"""``listwatch mirror`` drops ``metadata.managedFields`` unless told not to, and
``--metadata-only`` rows then carry none either (processes against the fake, whose HTTP
writes record managedFields as kube-apiserver's do)."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from kubernetes_asyncio import client

from listwatch.sinks.sqlite import read_mirror
from listwatch.testing import FakeApiServer
from tests.cli.helpers import mirrored, server_objects
from tests.objects import pod
from tests.processes import running

FAST = ["--merge-interval", "0.05"]


def without_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    metadata = {k: v for k, v in obj["metadata"].items() if k != "managedFields"}
    return {**obj, "metadata": metadata}


def partial(obj: dict[str, Any]) -> dict[str, Any]:
    """A PartialObjectMetadata row, as the metadata-only mirror writes it."""
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj["metadata"],
    }


async def test_mirror_strips_managed_fields_from_snapshots_and_changes_unless_told_not_to(
    server: FakeApiServer, kubeconfig: Path, api_client: Any, tmp_path: Path
) -> None:
    core = client.CoreV1Api(api_client)
    for name in ("a", "b", "c"):
        await core.create_namespaced_pod("default", pod(name), field_manager="kubectl-create")
    flags = {"strip": [], "keep": ["--no-strip-managed-fields"], "metadata": ["--metadata-only"]}
    databases = {mode: tmp_path / f"{mode}.db" for mode in flags}

    async with contextlib.AsyncExitStack() as stack:
        processes = [
            await stack.enter_async_context(
                running(
                    f"mirror {' '.join(flags[mode])}",
                    *("mirror", "pods", "--sqlite", str(db), "--kubeconfig", str(kubeconfig)),
                    *FAST,
                    *flags[mode],
                )
            )
            for mode, db in databases.items()
        ]
        for process in processes:
            await process.wait_for_line(r"pods: synced 3 objects")
        listed = server_objects(server, "v1", "Pod")
        snapshots = {
            mode: read_mirror(db, resource="pods").objects for mode, db in databases.items()
        }
        await server.wait_for_watchers(len(processes))

        # A change through the watch, by another field manager: two entries now.
        await core.patch_namespaced_pod(
            "b",
            "default",
            {"metadata": {"labels": {"tier": "web"}}},
            field_manager="editor",
            _content_type="application/merge-patch+json",
        )
        changed = server_objects(server, "v1", "Pod")
        rows = {
            mode: await mirrored(db, "pods", server, "v1", "Pod") for mode, db in databases.items()
        }
        for process in processes:
            assert await process.stop() == 0

    assert [m["manager"] for m in changed["default/b"]["metadata"]["managedFields"]] == [
        "kubectl-create",
        "editor",
    ]
    assert rows["strip"]["default/b"]["metadata"]["labels"] == {"tier": "web"}
    for have, want in ((snapshots, listed), (rows, changed)):
        assert have["keep"] == want
        assert have["strip"] == {key: without_managed_fields(obj) for key, obj in want.items()}
        assert have["metadata"] == {
            key: partial(without_managed_fields(obj)) for key, obj in want.items()
        }
