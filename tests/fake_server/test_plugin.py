"""The pytest plugin, run in child pytest processes with and without pytest-asyncio.

Each child opts in as a user does (``pytest_plugins`` in its conftest.py) and loads no
plugin of the environment by itself (``PYTEST_DISABLE_PLUGIN_AUTOLOAD``): the async runner
is named with ``-p``, so what passes here passes with nothing but what the test asked for.
"""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
from pathlib import Path

import pytest

from listwatch.testing import FakeApiServer

USES_FIXTURE = textwrap.dedent("""
    import pytest
    from kubernetes_asyncio import client

    {marks}
    async def test_fixture(fake_apiserver):
        pod = {{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "a"}}}}
        await fake_apiserver.create(pod)
        async with fake_apiserver.api_client() as api:
            pods = await client.CoreV1Api(api).list_namespaced_pod("default")
        assert [p.metadata.name for p in pods.items] == ["a"]

    @pytest.mark.fake_apiserver(namespaces=["solo"])
    {marks}
    async def test_marker_configures_the_server(fake_apiserver):
        namespaces = fake_apiserver.objects("v1", "Namespace")
        assert [ns["metadata"]["name"] for ns in namespaces] == ["solo"]

    def test_plain_tests_still_run():
        assert True
""")


OPT_IN = 'pytest_plugins = ["listwatch.testing.pytest_plugin"]\n'


async def run_pytest(directory: Path, test_source: str, ini: str, *args: str) -> tuple[int, str]:
    (directory / "pytest.ini").write_text(textwrap.dedent(ini))
    (directory / "conftest.py").write_text(OPT_IN)
    (directory / "test_child.py").write_text(test_source)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        *args,
        cwd=directory,
        env=os.environ | {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode or 0, output.decode()


async def test_fixture_with_pytest_asyncio_auto_mode(tmp_path: Path):
    code, output = await run_pytest(
        tmp_path, USES_FIXTURE.format(marks=""), "[pytest]\nasyncio_mode = auto\n", "-p", "asyncio"
    )
    assert code == 0, output
    assert "3 passed" in output


async def test_fixture_with_pytest_asyncio_strict_mode(tmp_path: Path):
    code, output = await run_pytest(
        tmp_path,
        USES_FIXTURE.format(marks="@pytest.mark.asyncio"),
        "[pytest]\nasyncio_mode = strict\n",
        "-p",
        "asyncio",
    )
    assert code == 0, output
    assert "3 passed" in output


async def test_fixture_without_pytest_asyncio_runs_under_anyio(tmp_path: Path):
    source = USES_FIXTURE.format(marks="@pytest.mark.anyio") + textwrap.dedent(
        """
        @pytest.fixture
        def anyio_backend():
            return "asyncio"
        """
    )
    code, output = await run_pytest(tmp_path, source, "[pytest]\n", "-p", "anyio")
    assert code == 0, output
    assert "3 passed" in output


@pytest.mark.fake_apiserver(namespaces=("solo",))
async def test_marker_reaches_this_suites_fixture(fake_apiserver: FakeApiServer):
    assert [ns["metadata"]["name"] for ns in fake_apiserver.objects("v1", "Namespace")] == ["solo"]
