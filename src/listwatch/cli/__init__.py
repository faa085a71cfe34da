"""The ``listwatch`` command: ``listwatch demo``, ``mirror``, ``receiver`` and ``fake-cluster``.

``main(argv)`` is the console-script entry point (and ``python -m listwatch``): it parses
the arguments, runs the command on a fresh event loop with Ctrl-C / SIGTERM wired to an
orderly stop, and returns the exit code. ``main_async(argv, stop=...)`` is the same command
on the caller's loop, for tests and embedding: setting ``stop`` is what a signal does.

Exit codes: 0 success (for the demo: the mirror equals the cluster), 1 failure (one line on
stderr says why), 2 bad usage, 130 interrupted: by a second Ctrl-C, or by the first while the
command is still starting.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from listwatch import __version__
from listwatch._shard import Shard
from listwatch.cli._extras import EXTRA, INSTALL, check_extras
from listwatch.cli._health import DEFAULT_STALE_AFTER
from listwatch.cli._logging import LEVELS, cli_logger, logging_to_stderr, resolve_level
from listwatch.cli._runtime import (
    EXIT_FAILURE,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    one_line,
    stop_on_signals,
    unless_stopped_while_starting,
)
from listwatch.cli._stores import HttpStoreSpec, PostgresStoreSpec, SQLiteStoreSpec, StoreSpec
from listwatch.leaderelection._record import LEASE_DURATION, RENEW_DEADLINE, RETRY_PERIOD

__all__ = ["build_parser", "main", "main_async"]


def _number(text: str) -> float:
    """A number of seconds (or a rate) as typed; argparse prints the error after the flag."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
    return value


def _whole_number(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None


def _positive(text: str) -> float:
    value = _number(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text}")
    return value


def _shard_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of shards, not {text}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value


def _one_shard(text: str) -> Shard:
    try:
        return Shard.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _non_negative(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or a positive number, not {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = _whole_number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be zero or a positive whole number, not {text}")
    return value


def _at_least_one(text: str) -> int:
    value = _whole_number(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="listwatch",
        description="Mirror Kubernetes objects into a receiver: whole snapshots, merged "
        "deltas, a fresh LIST after any error.",
    )
    parser.add_argument("--version", action="version", version=f"listwatch {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = commands.add_parser(
        "demo",
        help="mirror a busy fake cluster into SQLite, then check the copy object by object",
        description="Run listwatch against an in-process fake API server with a realistic "
        "pod workload and continuous churn, mirror it into SQLite, then stop the churn, wait "
        "for convergence and compare the mirror with the cluster. Exits 0 only if they match.",
    )
    demo.add_argument(
        "--pods", type=_at_least_one, default=2000, metavar="N", help="pods (default 2000)"
    )
    demo.add_argument(
        "--namespaces", type=_at_least_one, default=20, metavar="N", help="namespaces (default 20)"
    )
    demo.add_argument(
        "--seconds",
        type=_non_negative,
        default=20.0,
        metavar="S",
        help="churn duration (default 20)",
    )
    demo.add_argument(
        "--rate",
        type=_positive,
        default=250.0,
        metavar="N",
        help="churn changes per second (default 250; a recreate is two writes)",
    )
    demo.add_argument(
        "--merge-interval",
        type=_positive,
        metavar="S",
        default=0.5,
        help="seconds between batches to the receiver (default 0.5)",
    )
    demo.add_argument(
        "--db",
        type=Path,
        default=None,
        metavar="PATH",
        help="SQLite file to keep (default: a temporary file); one that is not empty is "
        "refused unless --overwrite",
    )
    demo.add_argument(
        "--overwrite",
        action="store_true",
        help="let --db be a file that is not empty (an earlier mirror): its pods are replaced",
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed of the run (default 0)")
    demo.add_argument(
        "--faults",
        action="store_true",
        help="inject stream cuts, 410 storms after compaction, 429s and receiver failures",
    )
    demo.add_argument(
        "--converge-timeout",
        type=_positive,
        metavar="S",
        default=30.0,
        help="how long to wait for the mirror to catch up at the end (default 30)",
    )
    demo.add_argument(
        "--plain", action="store_true", help="plain progress lines even on a terminal"
    )
    _logging_flags(demo)

    mirror = commands.add_parser(
        "mirror",
        help="mirror resources of a cluster (SQLite, PostgreSQL, HTTP) until Ctrl-C / SIGTERM",
        description="Mirror resources of a Kubernetes cluster into an SQLite file, a "
        "PostgreSQL database or a listwatch receiver (HTTP), one row per object plus a "
        "sync-state row per resource, until interrupted. Name resources as kubectl does: "
        "pods, nodes, deployments.apps, deployments.v1.apps, widgets.example.com.",
    )
    mirror.add_argument(
        "resources",
        metavar="RESOURCE",
        nargs="*",
        help="resources to mirror (pods nodes deployments.apps ...); more in --config",
    )
    mirror.add_argument(
        "--config",
        type=Path,
        default=None,
        metavar="FILE",
        help="TOML file with per-resource settings ([[resource]] name, namespace, "
        "label_selector, field_selector, metadata_only)",
    )
    mirror.add_argument(
        "--group", default=None, metavar="G", help="API group of a single RESOURCE (or: res.G)"
    )
    mirror.add_argument(
        "--version",
        default=None,
        metavar="V",
        help="API version of a single RESOURCE (default: the server's preferred; or: res.V.G)",
    )
    mirror.add_argument(
        "--namespace", "-n", default=None, metavar="NS", help="one namespace (default: all)"
    )
    mirror.add_argument("--selector", "-l", default=None, metavar="S", help="label selector")
    mirror.add_argument("--field-selector", default=None, metavar="S", help="field selector")
    store = mirror.add_mutually_exclusive_group(required=True)
    store.add_argument("--sqlite", type=Path, metavar="PATH", help="the SQLite file to write")
    store.add_argument(
        "--postgres", metavar="DSN", help="the PostgreSQL database to write (postgresql://...)"
    )
    store.add_argument(
        "--http",
        action="append",
        metavar="URL",
        help="send to a listwatch receiver (the HTTP sync protocol); give it again for "
        "receivers to fail over to, in order",
    )
    mirror.add_argument(
        "--cluster",
        default=None,
        metavar="NAME",
        help="the cluster the rows belong to, with --sqlite or --postgres: one database may "
        "hold a fleet (default: default); over --http the receiver knows the cluster from "
        "the credential",
    )
    mirror.add_argument(
        "--http-token-file",
        type=Path,
        metavar="FILE",
        help="bearer token for --http, read at every request (rotations are picked up)",
    )
    mirror.add_argument(
        "--http-ca", type=Path, metavar="FILE", help="CA bundle that signs the receiver's cert"
    )
    mirror.add_argument("--http-client-cert", type=Path, metavar="FILE", help="client cert (mTLS)")
    mirror.add_argument("--http-client-key", type=Path, metavar="FILE", help="its private key")
    mirror.add_argument(
        "--http-insecure-skip-tls-verify",
        action="store_true",
        help="do not verify the receiver's certificate (as kubectl's flag: insecure)",
    )
    source = mirror.add_mutually_exclusive_group()
    source.add_argument(
        "--kubeconfig",
        type=Path,
        default=None,
        metavar="PATH",
        help="kubeconfig (default: $KUBECONFIG, else ~/.kube/config)",
    )
    source.add_argument("--in-cluster", action="store_true", help="use the pod's service account")
    mirror.add_argument(
        "--context", default=None, metavar="NAME", help="kubeconfig context (default: current)"
    )
    mirror.add_argument(
        "--merge-interval",
        type=_positive,
        metavar="S",
        default=3.0,
        help="seconds between batches written (default 3)",
    )
    mirror.add_argument(
        "--resync-period",
        type=_positive,
        metavar="S",
        default=None,
        help="relist this often, in seconds (default: never)",
    )
    mirror.add_argument(
        "--sync-timeout",
        type=_positive,
        metavar="S",
        default=None,
        help="fail a receiver call (a whole snapshot, or a batch) that takes longer, and "
        "start again from a fresh snapshot (default: no limit)",
    )
    mirror.add_argument(
        "--list-strategy",
        choices=["auto", "stream", "paged"],
        default="auto",
        help="how snapshots are listed: a streaming list (WatchList) where the server "
        "serves it, else paged LISTs (auto, the default); or always one way",
    )
    mirror.add_argument(
        "--page-size",
        type=_at_least_one,
        default=500,
        metavar="N",
        help="objects per LIST request (its limit) when a snapshot is paged; when it is "
        "streamed, objects handed to the store at a time (default 500)",
    )
    mirror.add_argument(
        "--metadata-only",
        action="store_true",
        help="mirror only each object's metadata, as client-go's metadata informers do: rows "
        "are PartialObjectMetadata (kind, apiVersion and metadata: name, namespace, labels, "
        "annotations, ownerReferences, finalizers, ...; no spec, no status; managedFields "
        "only with --no-strip-managed-fields)",
    )
    mirror.add_argument(
        "--strip-managed-fields",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="drop metadata.managedFields (server-side apply's record of who set which "
        "field, a large part of every object) from every object written, as "
        "client-go's informers can (default: on); --no-strip-managed-fields keeps the "
        "objects exactly as the server sends them",
    )
    mirror.add_argument(
        "--metrics-address",
        default=None,
        metavar="HOST:PORT",
        help="serve /metrics (Prometheus), /healthz and /readyz there",
    )
    failures = mirror.add_argument_group(
        "failures",
        "Every failed attempt is a warning naming the resource, the target, the reason and "
        "when the next attempt is; the mirror retries for ever unless told otherwise.",
    )
    failures.add_argument(
        "--stale-after",
        type=_positive,
        default=DEFAULT_STALE_AFTER,
        metavar="S",
        help="a resource not synced for this long (failing since its last sync, or since "
        "the start) is logged as an error once and makes /readyz false until it syncs again "
        f"(default {DEFAULT_STALE_AFTER:g}: twice the longest backoff)",
    )
    failures.add_argument(
        "--exit-on-failure",
        type=_positive,
        default=None,
        metavar="S",
        help="exit 1 once any resource has been failing for this long without a sync, "
        "naming it and the last error (for cron-style runs; default: retry for ever)",
    )
    election = mirror.add_argument_group(
        "leader election",
        "Several replicas: one leads (a coordination.k8s.io/v1 Lease, client-go's rules) and "
        "mirrors; the others stand by. Every write carries the term's epoch, and receivers "
        "refuse an older one.",
    )
    election.add_argument("--leader-elect", action="store_true", help="campaign for the lease")
    election.add_argument(
        "--lease-name", default="listwatch", metavar="NAME", help="the Lease (default listwatch)"
    )
    election.add_argument(
        "--lease-namespace",
        default=None,
        metavar="NS",
        help="its namespace (default: the pod's own in a cluster, else default)",
    )
    election.add_argument(
        "--identity",
        default=None,
        metavar="ID",
        help="this replica's name in the lease (default: hostname plus a random suffix)",
    )
    election.add_argument(
        "--lease-duration",
        type=_positive,
        default=LEASE_DURATION,
        metavar="S",
        help="default %(default)g",
    )
    election.add_argument(
        "--renew-deadline",
        type=_positive,
        default=RENEW_DEADLINE,
        metavar="S",
        help="default %(default)g",
    )
    election.add_argument(
        "--retry-period",
        type=_positive,
        default=RETRY_PERIOD,
        metavar="S",
        help="default %(default)g",
    )
    sharding = mirror.add_argument_group(
        "sharding",
        "Split every resource into shards by the 64-bit FNV-1a hash of the uid (server-side "
        "where the API server applies shardSelector, else filtered here); each shard is "
        "mirrored, and replaced on snapshots, on its own.",
    )
    sharding.add_argument(
        "--shards",
        type=_shard_count,
        default=None,
        metavar="N",
        help="with --leader-elect: N shard Leases (<lease-name>-shard-<i>), each with its "
        "own epoch; every replica holds at most ceil(N / live replicas) of them and mirrors "
        "those, and takes over a dead replica's shards when their Leases expire",
    )
    sharding.add_argument(
        "--shard",
        type=_one_shard,
        default=None,
        metavar="I/N",
        help="mirror shard I (from 0) of N alone, without election (or a range 0xSTART-0xEND)",
    )
    _logging_flags(mirror)

    receiver = commands.add_parser(
        "receiver",
        help="receive `mirror --http` syncs into SQLite or PostgreSQL",
        description="Serve the HTTP sync protocol: apply each full sync (atomically, at its "
        "commit record) and each delta (in one transaction) to an SQLite file or a "
        "PostgreSQL database, refusing stale epochs and generations with 409. Each "
        "credential writes one cluster: a fleet's receivers take --clients, and any number "
        "of them may serve one PostgreSQL database at once (they keep no state of their own).",
    )
    receiver.add_argument("--listen", required=True, metavar="HOST:PORT", help="where to serve")
    store = receiver.add_mutually_exclusive_group(required=True)
    store.add_argument("--sqlite", type=Path, metavar="PATH", help="the SQLite file to write")
    store.add_argument("--postgres", metavar="DSN", help="the PostgreSQL database to write")
    credentials = receiver.add_mutually_exclusive_group()
    credentials.add_argument(
        "--clients",
        type=Path,
        metavar="FILE",
        help="a fleet's credentials, each writing one cluster: a TOML file of [[cluster]] "
        "entries (name, token_sha256 = hex SHA-256 of the bearer token or a list of them, "
        "optional certificate_cn, and max_objects, max_bytes: caps past which a write is "
        "refused with 413); re-read on SIGHUP and when it changes (a broken file is logged "
        "and the previous one kept)",
    )
    credentials.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help="one cluster's bearer token (the cluster of --cluster), needed by every request",
    )
    receiver.add_argument(
        "--cluster",
        default="default",
        metavar="NAME",
        help="the cluster that --token-file's token (or, with --client-ca alone, every client "
        "certificate) writes, and the cluster the rows of a database written before "
        "clusters existed become (default: default)",
    )
    receiver.add_argument("--tls-cert", type=Path, metavar="FILE", help="serve HTTPS: cert")
    receiver.add_argument("--tls-key", type=Path, metavar="FILE", help="serve HTTPS: its key")
    receiver.add_argument(
        "--client-ca", type=Path, metavar="FILE", help="require client certificates it signed"
    )
    receiver.add_argument(
        "--header-timeout",
        type=_positive,
        default=10.0,
        metavar="S",
        help="close a connection that sends no whole request header within S seconds of "
        "opening, or of its last answer (default 10)",
    )
    receiver.add_argument(
        "--idle-timeout",
        type=_positive,
        default=30.0,
        metavar="S",
        help="answer 408 and apply nothing when a request body sends no byte for S seconds "
        "(default 30; a mirror sends a blank line every 5 s while its listing is slow)",
    )
    _logging_flags(receiver)
    _fake_cluster_parser(commands)
    return parser


def _fake_cluster_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    fake = commands.add_parser(
        "fake-cluster",
        help="serve a fake Kubernetes API server (HTTPS) to try mirror, receiver and kubectl on",
        description="Serve listwatch's fake API server (kube-apiserver's list/watch semantics, "
        "discovery for kubectl) over HTTPS with a CA of its own, optionally with realistic pods "
        "and churn, and write a kubeconfig for it, until Ctrl-C / SIGTERM. Its only "
        "credential is the bearer token in that kubeconfig.",
    )
    fake.add_argument(
        "--pods", type=_non_negative_int, default=0, metavar="N", help="pods to create (default 0)"
    )
    fake.add_argument(
        "--namespaces", type=_at_least_one, default=5, metavar="N", help="for them (default 5)"
    )
    fake.add_argument(
        "--churn",
        type=_non_negative,
        default=0.0,
        metavar="RATE",
        help="changes per second to the pods, as the demo makes them (default 0: none)",
    )
    fake.add_argument("--seed", type=int, default=0, help="random seed of the pods (default 0)")
    fake.add_argument(
        "--kubeconfig",
        type=Path,
        default=None,
        metavar="PATH",
        help="write the kubeconfig here, once the pods exist (default: a temporary file); "
        "an existing file is replaced only if it is a fake-cluster kubeconfig",
    )
    fake.add_argument(
        "--keep-kubeconfig",
        action="store_true",
        help="leave the kubeconfig behind on exit (by default it is removed: its server is gone)",
    )
    fake.add_argument(
        "--listen",
        default="127.0.0.1",
        metavar="ADDRESS",
        help="IP address to listen on (default 127.0.0.1)",
    )
    fake.add_argument(
        "--port", type=int, default=0, metavar="PORT", help="default: a free port (printed)"
    )
    fake.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --listen address other than loopback: anyone who can reach it and holds "
        "the kubeconfig's token may read and write everything",
    )
    _logging_flags(fake)


def _logging_flags(parser: argparse.ArgumentParser) -> None:
    levels = parser.add_mutually_exclusive_group()
    levels.add_argument(
        "--log-level",
        choices=list(LEVELS),
        default=None,
        help="the least severe lines shown (default: the command's own lines and the "
        "receiver's request log at info, the rest at warning)",
    )
    levels.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="-v is --log-level info (generations, restarts), -vv debug (every event)",
    )
    parser.add_argument(
        "--log-format",
        choices=["text", "json"],
        default="text",
        help="text (default) or json: one object per line with time, level, logger, "
        "resource, message and fields",
    )


async def main_async(
    argv: Sequence[str] | None = None, *, stop: asyncio.Event | None = None
) -> int:
    """Run a command on the running loop. Without ``stop``, SIGINT/SIGTERM stop it."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "mirror":
        try:
            _check_sharding(args)
        except CliError as exc:
            parser.error(str(exc))  # exits 2, as every other usage error does
    level = resolve_level(args.log_level, args.verbose)
    with logging_to_stderr(level, args.log_format, command=args.command):
        if stop is not None:
            return await _dispatch(args, stop)
        stop = asyncio.Event()
        with stop_on_signals(stop, _notice):
            return await _dispatch(args, stop)


def _notice(signum: signal.Signals) -> None:
    cli_logger.info("%s: stopping (again to abort)", signum.name, extra={"signal": signum.name})


async def _dispatch(args: argparse.Namespace, stop: asyncio.Event) -> int:
    commands = {
        "demo": _run_demo,
        "receiver": _run_receiver,
        "fake-cluster": _run_fake_cluster,
        "mirror": _run_mirror,
    }
    command = commands[args.command]
    try:
        check_extras(args)
        code = await unless_stopped_while_starting(
            lambda started: command(args, stop, started), stop
        )
    except CliError as exc:
        cli_logger.error("%s", exc, extra={"resource": exc.resource})
        return EXIT_FAILURE
    except ImportError as exc:
        cli_logger.error("this command needs the %r extra (%s): %s", EXTRA, one_line(exc), INSTALL)
        return EXIT_FAILURE
    if code is None:
        cli_logger.info("stopped while starting")
        return EXIT_INTERRUPTED
    return code


async def _run_demo(args: argparse.Namespace, stop: asyncio.Event, started: asyncio.Event) -> int:
    from listwatch.cli import _demo as demo  # noqa: PLC0415 - needs aiosqlite: import on use
    from listwatch.cli._progress import make_view  # noqa: PLC0415

    try:
        options = demo.DemoOptions(
            pods=args.pods,
            namespaces=args.namespaces,
            seconds=args.seconds,
            rate=args.rate,
            merge_interval=args.merge_interval,
            db=args.db,
            seed=args.seed,
            faults=args.faults,
            converge_timeout=args.converge_timeout,
            overwrite=args.overwrite,
        )
    except ValueError as exc:
        raise CliError(str(exc)) from None
    started.set()  # in-process throughout: the demo stops in order at any time
    view = make_view(sys.stdout, rich=False if args.plain else None)
    try:
        report = await demo.run_demo(options, view, stop)
    finally:
        view.close()
    view.verdict(demo.format_report(report), passed=report.passed)
    return EXIT_OK if report.passed else EXIT_FAILURE


async def _run_mirror(args: argparse.Namespace, stop: asyncio.Event, started: asyncio.Event) -> int:
    from listwatch.cli import _mirror as mirror  # noqa: PLC0415 - needs aiosqlite: import on use
    from listwatch.cli._config import ResourceSpec, load_specs  # noqa: PLC0415

    names = list(args.resources)
    if args.group or args.version:
        if len(names) != 1:
            raise CliError("--group and --version qualify a single RESOURCE (or write res.V.G)")
        names = [".".join(p for p in (names[0], args.version, args.group) if p)]
    defaults = ResourceSpec(
        name="",
        namespace=args.namespace,
        label_selector=args.selector,
        field_selector=args.field_selector,
        metadata_only=args.metadata_only,
    )
    options = mirror.MirrorOptions(
        resources=load_specs(names, defaults, args.config),
        store=_store_spec(args),
        kubeconfig=args.kubeconfig,
        in_cluster=args.in_cluster,
        context=args.context,
        merge_interval=args.merge_interval,
        resync_period=args.resync_period,
        sync_timeout=args.sync_timeout,
        list_strategy=args.list_strategy,
        page_size=args.page_size,
        strip_managed_fields=args.strip_managed_fields,
        metrics_address=args.metrics_address,
        stale_after=args.stale_after,
        exit_on_failure=args.exit_on_failure,
        election=mirror.ElectionOptions(
            lease_name=args.lease_name,
            lease_namespace=args.lease_namespace,
            identity=args.identity,
            lease_duration=args.lease_duration,
            renew_deadline=args.renew_deadline,
            retry_period=args.retry_period,
        )
        if args.leader_elect
        else None,
        shards=args.shards,
        shard=args.shard,
    )
    return await mirror.run_mirror(options, stop, started)


def _check_sharding(args: argparse.Namespace) -> None:
    """``--shards`` and ``--shard`` go with election and without it, respectively."""
    if args.shards is not None and args.shard is not None:
        raise CliError(
            "--shards N and --shard I/N exclude each other: --shards shares N shards among "
            "replicas by election (with --leader-elect); --shard runs one shard alone"
        )
    if args.shards is not None and not args.leader_elect:
        raise CliError(
            "--shards N needs --leader-elect: the replicas share the shards through Leases "
            "(to run one shard alone, without election, use --shard I/N)"
        )
    if args.shard is not None and args.leader_elect:
        raise CliError(
            "--shard I/N runs one shard without election; for replicas that share shards, "
            "use --shards N with --leader-elect"
        )


async def _run_receiver(
    args: argparse.Namespace, stop: asyncio.Event, started: asyncio.Event
) -> int:
    from listwatch.cli import _receiver as receiver  # noqa: PLC0415 - its stores import on use

    cluster = _cluster(args.cluster)
    options = receiver.ReceiverOptions(
        listen=args.listen,
        store=SQLiteStoreSpec(args.sqlite, cluster)
        if args.sqlite is not None
        else PostgresStoreSpec(args.postgres, cluster),
        clients=args.clients,
        cluster=cluster,
        token_file=args.token_file,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        client_ca=args.client_ca,
        header_timeout=args.header_timeout,
        idle_timeout=args.idle_timeout,
    )
    return await receiver.run_receiver(options, stop, started)


async def _run_fake_cluster(
    args: argparse.Namespace, stop: asyncio.Event, started: asyncio.Event
) -> int:
    from listwatch.cli import _fake_cluster as fake  # noqa: PLC0415 - the fake: import on use

    try:
        options = fake.FakeClusterOptions(
            pods=args.pods,
            namespaces=args.namespaces,
            churn=args.churn,
            seed=args.seed,
            kubeconfig=args.kubeconfig,
            keep_kubeconfig=args.keep_kubeconfig,
            listen=args.listen,
            port=args.port,
            allow_remote=args.allow_remote,
        )
    except ValueError as exc:  # flags that do not go together: bad usage, one line
        cli_logger.error("%s", exc)
        return EXIT_USAGE
    started.set()  # its server is in-process: it stops in order at any time
    return await fake.run_fake_cluster(options, stop)


def _cluster(name: str) -> str:
    from listwatch.sinks._base import check_cluster  # noqa: PLC0415 - its layer's rule

    try:
        return check_cluster(name)
    except ValueError as exc:
        raise CliError(f"--cluster: {exc}") from None


def _store_spec(args: argparse.Namespace) -> StoreSpec:
    http_flags = [
        args.http_token_file,
        args.http_ca,
        args.http_client_cert,
        args.http_client_key,
    ]
    if args.http is None and (
        any(f is not None for f in http_flags) or args.http_insecure_skip_tls_verify
    ):
        raise CliError("the --http-* options go with --http URL")
    if args.http is not None and args.cluster is not None:
        raise CliError(
            "--cluster goes with --sqlite or --postgres: over --http the receiver knows the "
            "cluster from the credential"
        )
    cluster = _cluster(args.cluster or "default")
    if args.sqlite is not None:
        return SQLiteStoreSpec(args.sqlite, cluster)
    if args.postgres is not None:
        return PostgresStoreSpec(args.postgres, cluster)
    return HttpStoreSpec(
        tuple(args.http),
        token_file=args.http_token_file,
        ca_file=args.http_ca,
        client_cert=args.http_client_cert,
        client_key=args.http_client_key,
        verify=not args.http_insecure_skip_tls_verify,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """The console script: run a command on a fresh event loop and return its exit code."""
    try:
        return asyncio.run(main_async(argv))
    except (KeyboardInterrupt, asyncio.CancelledError):
        sys.stderr.write("listwatch: interrupted\n")
        return EXIT_INTERRUPTED
