"""``listwatch fake-cluster``: the project's fake API server as a process, to try things on.

The mirror, the receiver and the examples need a cluster; envtest, kind and kwok users
expect a command that starts one. This serves ``listwatch.testing.FakeApiServer`` (the
server the tests and the demo use: kube-apiserver's list/watch semantics, discovery and
OpenAPI for kubectl) over HTTPS with its own CA, optionally with the demo's pods and churn
(``listwatch.testing.scenario.PodWorkload``), and writes a kubeconfig that kubectl,
``listwatch mirror`` and the examples use as they would a real cluster's.

It listens on 127.0.0.1 unless told otherwise, and a non-loopback address needs
``--allow-remote``: the fake's only authentication is the bearer token in the kubeconfig,
and whoever holds it may read and write everything.

The kubeconfig is written once the cluster is ready (populated), so its appearance can be
waited for, and removed on the way out unless ``--keep-kubeconfig``: it names a port and a
CA that die with the process, and it holds a token. A path that already holds some other
file is refused rather than overwritten (``--kubeconfig ~/.kube/config`` must not cost the
user their real one); a kubeconfig an earlier fake-cluster left behind may be replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import random
import shlex
import tempfile
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from listwatch._aio import cancel_and_join
from listwatch.cli._logging import cli_logger
from listwatch.cli._runtime import CliError, one_line
from listwatch.testing import FakeApiServer
from listwatch.testing._kubeconfig import CONTEXT_NAME
from listwatch.testing._server import DEFAULT_NAMESPACES, LOOPBACK
from listwatch.testing.scenario import PodWorkload, namespace_names

#: Bookmarks every second keep a mirror's resume point moving even when churn is quiet.
BOOKMARK_INTERVAL = 1.0


def history_limit(pods: int) -> int:
    """The fake's event window: a watch cache keeps a bounded history, and so must a fake
    that runs for long (each kept version is a whole pod in memory). A few seconds of churn,
    at least."""
    return max(2000, pods)


def pod_server(
    *, pods: int, namespaces: int, seed: int, host: str = LOOPBACK, port: int = 0
) -> FakeApiServer:
    """A fake API server (HTTPS, not yet started) ready for a ``PodWorkload`` of ``pods`` pods
    in ``namespaces`` team namespaces: the demo's and fake-cluster's."""
    return FakeApiServer(
        seed=seed,
        namespaces=(*DEFAULT_NAMESPACES, *namespace_names(namespaces)),
        bookmark_interval=BOOKMARK_INTERVAL,
        history_limit=history_limit(pods),
        tls=True,  # HTTPS with the server's own CA, which the kubeconfig carries
        host=host,
        port=port,
    )


@dataclass(frozen=True, slots=True)
class FakeClusterOptions:
    """The command's flags; a ``ValueError`` here is a usage error (exit 2)."""

    pods: int = 0
    namespaces: int = 5
    churn: float = 0.0
    seed: int = 0
    kubeconfig: Path | None = None
    keep_kubeconfig: bool = False
    listen: str = LOOPBACK
    port: int = 0
    allow_remote: bool = False

    def __post_init__(self) -> None:
        if self.pods < 0 or self.namespaces < 1:
            raise ValueError("--pods must be >= 0 and --namespaces at least 1")
        if self.churn < 0:
            raise ValueError("--churn must not be negative")
        if self.churn > 0 and self.pods == 0:
            raise ValueError("--churn changes the workload's pods: give --pods N too")
        if self.keep_kubeconfig and self.kubeconfig is None:
            raise ValueError("--keep-kubeconfig goes with --kubeconfig PATH")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"--port must be 0 (a free port) to 65535, got {self.port}")
        if not is_loopback(self.listen) and not self.allow_remote:
            raise ValueError(
                f"--listen {self.listen} is not a loopback address: the fake cluster's only "
                "credential is a bearer token, and whoever holds it may write anything "
                "(--allow-remote serves it anyway)"
            )


def is_loopback(address: str) -> bool:
    """Whether ``address`` is a loopback IP address. Names are refused: ``localhost`` may
    resolve to two addresses, and a free port is picked per address."""
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        raise ValueError(
            f"--listen {address}: give an IP address (127.0.0.1, ::1; 0.0.0.0 or :: for all)"
        ) from None


def _is_fake_kubeconfig(path: Path) -> bool:
    """Whether ``path`` holds a kubeconfig fake-cluster wrote (JSON, our context)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(document, dict) and document.get("current-context") == CONTEXT_NAME


@contextlib.contextmanager
def _kubeconfig_path(options: FakeClusterOptions) -> Iterator[tuple[Path, bool]]:
    """Where the kubeconfig goes, and whether it stays after the run: the path given, or
    a file in a temporary directory (removed)."""
    if options.kubeconfig is None:
        with tempfile.TemporaryDirectory(prefix="listwatch-fake-cluster-") as directory:
            yield Path(directory) / "kubeconfig", False
        return
    path = options.kubeconfig.expanduser().absolute()
    if path.is_dir() or (path.exists() and not _is_fake_kubeconfig(path)):
        raise CliError(
            f"--kubeconfig {path} already exists and is not a kubeconfig of fake-cluster: "
            "give a new path (it would be overwritten)"
        )
    yield path, options.keep_kubeconfig


def _say(line: str) -> None:
    """A line for the person running the command (text or JSON, as ``--log-format`` says)."""
    cli_logger.info(line)


async def _until_stopped(work: Coroutine[Any, Any, None], stop: asyncio.Event) -> bool:
    """Run ``work`` until it ends or ``stop`` is set: True if it ended (its error raised
    here), False if stopped first (it is then cancelled and joined)."""
    task = asyncio.ensure_future(work)
    stopping = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await cancel_and_join(stopping, task)  # a no-op for the one that is done
    if task.cancelled():
        return False
    task.result()
    return True


async def _churn(workload: PodWorkload, rate: float) -> None:
    """The workload's churn until cancelled. Someone else deleting or changing its pods (say
    with kubectl) can break it: that ends the churn with a line, not the server."""
    try:
        await workload.churn(rate)
    except Exception as exc:  # any failure of the churn: told, then serving on
        _say(f"the churn stopped: {one_line(exc)}; still serving")


async def run_fake_cluster(options: FakeClusterOptions, stop: asyncio.Event) -> int:
    """Serve until ``stop`` is set; raises ``CliError`` for what the user must fix."""
    with _kubeconfig_path(options) as (kubeconfig, keep):
        server = pod_server(
            pods=options.pods,
            namespaces=options.namespaces,
            seed=options.seed,
            host=options.listen,
            port=options.port,
        )
        try:
            await server.start()
        except OSError as exc:  # asyncio's message repeats the address: the reason will do
            why = os.strerror(exc.errno) if exc.errno else one_line(exc)
            raise CliError(
                f"cannot listen on {options.listen} port {options.port}: {why}"
            ) from None
        try:
            await _serve(options, server, kubeconfig, keep=keep, stop=stop)
        finally:
            await server.stop()
            if not keep:
                kubeconfig.unlink(missing_ok=True)
    _say("stopped" + ("" if keep or options.kubeconfig is None else "; kubeconfig removed"))
    return 0


async def _serve(
    options: FakeClusterOptions,
    server: FakeApiServer,
    kubeconfig: Path,
    *,
    keep: bool,
    stop: asyncio.Event,
) -> None:
    """Populate, write the kubeconfig, say how to use it, and churn until ``stop``."""
    workload: PodWorkload | None = None
    if options.pods:
        workload = PodWorkload(
            server, random.Random(options.seed), pods=options.pods, namespaces=options.namespaces
        )
        _say(
            f"creating {options.pods} pods in {options.namespaces} namespaces "
            f"(seed {options.seed})",
        )
        if not await _until_stopped(workload.populate(), stop):
            return
    try:
        server.write_kubeconfig(kubeconfig)
    except OSError as exc:
        raise CliError(f"cannot write the kubeconfig {kubeconfig}: {one_line(exc)}") from None
    port = server.url.rsplit(":", 1)[1]
    what = "no pods" if workload is None else f"{workload.size} pods"
    churn = f", churning {options.churn:g} changes/s" if options.churn else ""
    _say(f"serving {server.url} (port {port}): {what}{churn}")
    if options.kubeconfig is None:
        kept = "a temporary file, removed on exit (--kubeconfig PATH writes one where you say)"
    else:
        kept = "kept on exit" if keep else "removed on exit; --keep-kubeconfig keeps it"
    _say(f"kubeconfig: {kubeconfig} ({kept})")
    quoted = shlex.quote(str(kubeconfig))
    _say(f"try it: KUBECONFIG={quoted} kubectl get pods -A")
    _say(f"try it: listwatch mirror pods --kubeconfig {quoted} --sqlite mirror.db")
    _say("Ctrl-C or SIGTERM stops")
    if workload is not None and options.churn:
        await _until_stopped(_churn(workload, options.churn), stop)
    await stop.wait()
