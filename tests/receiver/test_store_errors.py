"""A store the receiver (or the mirror) cannot open is one line that keeps the useful part:
PostgreSQL's own message, a DSN's mistake in words; never the DSN's password."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from listwatch.cli import main_async
from listwatch.cli._runtime import CliError
from listwatch.cli._stores import PostgresStoreSpec, open_receivers
from tests.postgres_server import PostgresServer

PASSWORD = "s3cret-pw-91"


def one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err
    assert len(lines) == 1, lines
    return lines[0]


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    path = tmp_path / "token"
    path.write_text("t")
    return path


async def receive_into(dsn: str, token_file: Path) -> int:
    argv = ["receiver", "--listen", "127.0.0.1:0", "--postgres", dsn]
    return await main_async([*argv, "--token-file", str(token_file)], stop=asyncio.Event())


async def test_a_port_that_is_not_a_number_is_named(
    token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await receive_into(f"postgresql://lw:{PASSWORD}@localhost:54x2/db", token_file)
    assert code == 1
    line = one_line(capsys.readouterr().err)
    assert line == (
        "listwatch receiver: error: cannot connect to PostgreSQL at "
        "postgresql://lw@localhost:54x2/db: the port '54x2' is not a number"
    )


async def test_the_servers_own_message_is_kept(
    postgres_server: PostgresServer, token_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await receive_into(postgres_server.dsn("no_such_database"), token_file)
    assert code == 1
    line = one_line(capsys.readouterr().err)
    assert "InvalidCatalogNameError" in line
    assert 'database "no_such_database" does not exist' in line


async def test_the_mirrors_target_says_the_same() -> None:
    """``mirror --postgres`` opens its store through the same path."""
    spec = PostgresStoreSpec(f"postgresql://lw:{PASSWORD}@localhost:99x/db")
    with pytest.raises(CliError) as raised:
        async with open_receivers(spec, ["pods"]):
            pass
    assert "the port '99x' is not a number" in str(raised.value)
    assert PASSWORD not in str(raised.value)


@pytest.mark.parametrize(
    ("dsn", "shown"),
    [
        (f"postgresql://lw:{PASSWORD}@db:5432/k8s", "postgresql://lw@db:5432/k8s"),
        (f"postgresql://lw@db/k8s?password={PASSWORD}", "postgresql://lw@db/k8s"),
        ("postgres://db1:5432,db2:5433/k8s", "postgres://db1:5432,db2:5433/k8s"),
    ],
)
def test_a_target_is_shown_without_its_password(dsn: str, shown: str) -> None:
    assert PostgresStoreSpec(dsn).describe() == shown
