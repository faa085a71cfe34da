"""The command line itself: help, version, and usage errors (exit 2, from argparse)."""

from __future__ import annotations

import asyncio

import pytest

from listwatch import __version__
from listwatch.cli import build_parser, main_async


def test_help_lists_both_commands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "demo" in out
    assert "mirror" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--version"])
    assert capsys.readouterr().out.strip() == f"listwatch {__version__}"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["mirror", "pods"],  # --sqlite is required
        ["mirror", "pods", "--sqlite", "m.db", "--kubeconfig", "k", "--in-cluster"],
        ["mirror", "pods", "--sqlite", "m.db", "--merge-interval", "0"],
        ["demo", "--seconds", "-1"],
        ["demo", "--pods", "0"],
    ],
)
def test_usage_errors_exit_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2


def test_mirror_defaults() -> None:
    args = build_parser().parse_args(["mirror", "pods", "--sqlite", "m.db"])
    assert (args.resources, args.group, args.version, args.namespace, args.merge_interval) == (
        ["pods"],
        None,
        None,  # the server's preferred version, from discovery
        None,
        3.0,
    )
    assert args.resync_period is None
    assert (args.list_strategy, args.metadata_only, args.metrics_address) == ("auto", False, None)


def test_mirror_takes_several_resources() -> None:
    args = build_parser().parse_args(
        ["mirror", "pods", "nodes", "deployments.v1.apps", "--sqlite", "m.db"]
    )
    assert args.resources == ["pods", "nodes", "deployments.v1.apps"]


async def test_in_cluster_outside_a_cluster_is_one_line(
    tmp_path: object, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await main_async(
        ["mirror", "pods", "--sqlite", "m.db", "--in-cluster"], stop=asyncio.Event()
    )
    assert code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert "cannot load the in-cluster configuration" in err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["mirror", "pods", "--sqlite", "m.db", "--merge-interval", "0"],
            "must be a positive number, not 0",
        ),
        (["mirror", "pods", "--sqlite", "m.db", "--stale-after", "soon"], "'soon' is not a number"),
        (
            ["mirror", "pods", "--sqlite", "m.db", "--exit-on-failure", "nan"],
            "must be a finite number",
        ),
        (["demo", "--seconds", "-1"], "must be zero or a positive number, not -1"),
        (["demo", "--pods", "many"], "'many' is not a whole number"),
        (["demo", "--pods", "0"], "must be at least 1, not 0"),
    ],
)
def test_a_bad_value_is_explained_in_words(
    argv: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)
    err = capsys.readouterr().err
    assert expected in err
    assert "invalid" not in err  # argparse's "invalid _positive value", naming our code


def test_log_flags() -> None:
    args = build_parser().parse_args(
        ["mirror", "pods", "--sqlite", "m.db", "--log-level", "debug", "--log-format", "json"]
    )
    assert (args.log_level, args.log_format, args.verbose) == ("debug", "json", 0)
    assert (args.stale_after, args.exit_on_failure) == (60.0, None)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["receiver", "--listen", ":0", "-v", "--log-level", "info"])
