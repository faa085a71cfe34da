"""Every request a ``listwatch mirror`` process makes names listwatch in its User-Agent, the
leader election's Lease requests included, so that an API server's audit log and its
Priority and Fairness rules can tell the mirror from any other Python client."""

from __future__ import annotations

from pathlib import Path

from listwatch._version import USER_AGENT
from listwatch.testing import FakeApiServer
from tests.cli.helpers import mirrored
from tests.objects import pod
from tests.processes import running


async def test_a_mirror_process_names_listwatch_on_every_request(
    server: FakeApiServer, kubeconfig: Path, tmp_path: Path
) -> None:
    await server.create(pod("a"))
    db = tmp_path / "mirror.db"
    args = ("mirror", "pods", "--sqlite", str(db), "--kubeconfig", str(kubeconfig))
    async with running("mirror", *args, "--merge-interval", "0.05", "--leader-elect") as mirror:
        await mirror.wait_for_line(r"pods: synced 1 objects")
        await server.create(pod("b"))
        assert set(await mirrored(db, "pods", server, "v1", "Pod")) == {"default/a", "default/b"}
        assert await mirror.stop() == 0, mirror.tail()
    paths = {request.path for request in server.requests}
    assert "/api/v1/pods" in paths
    assert any("/leases" in path for path in paths)  # the election went through it too
    assert {request.user_agent for request in server.requests} == {USER_AGENT}
