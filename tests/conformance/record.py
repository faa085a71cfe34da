"""Record the conformance corpus from a real kube-apiserver (run by hand, never in CI).

    python -m tests.conformance.record --kubeconfig PATH [--etcd URL] [--group NAME]

Each group (``exchanges.py``) needs the server in a given configuration; the recorder reads
the server's feature gates from ``/metrics`` and records the groups they fit, naming the
others and the flags they need. The result replaces ``corpus/<group>.json``. See README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import datetime
import json
import re
import ssl
import sys
from pathlib import Path
from typing import Any

import aiohttp
from kubernetes_asyncio import client as k8s_client
from kubernetes_asyncio import config as k8s_config

from tests.conformance.exchanges import GROUPS
from tests.conformance.normalize import normalize
from tests.conformance.runner import new_namespace, run_group
from tests.conformance.script import Group

CORPUS = Path(__file__).parent / "corpus"
#: The key kube-apiserver's compactor keeps etcd's compacted revision under
#: (k8s.io/apiserver pkg/storage/etcd3/compact.go); the watch cache polls it every 15 s.
COMPACT_REV_KEY = "compact_rev_key"


class RealTarget:
    """A kube-apiserver reached through a kubeconfig with a bearer token."""

    def __init__(self, configuration: k8s_client.Configuration, etcd: str | None) -> None:
        self.base_url: str = configuration.host or ""
        token = configuration.api_key.get("BearerToken") or configuration.api_key.get(
            "authorization", ""
        )
        self.token = token.removeprefix("Bearer ").strip()
        if not self.token:
            raise SystemExit("the kubeconfig's user must authenticate with a bearer token")
        self.ssl_context = ssl.create_default_context(cafile=configuration.ssl_ca_cert)
        self.address = self.base_url.split("://", 1)[1].rstrip("/")
        self._etcd = etcd

    async def prepare_namespace(self, session: aiohttp.ClientSession, namespace: str) -> None:
        """The ServiceAccount controller's part: a ``default`` ServiceAccount for pods."""
        await self._post(
            session,
            f"/api/v1/namespaces/{namespace}/serviceaccounts",
            {"metadata": {"name": "default"}},
        )

    async def identity_token(
        self, session: aiohttp.ClientSession, namespace: str, name: str
    ) -> str:
        """A ServiceAccount no role is bound to, and a token for it (TokenRequest)."""
        path = f"/api/v1/namespaces/{namespace}/serviceaccounts"
        await self._post(session, path, {"metadata": {"name": name}})
        answer = await self._post(
            session,
            f"{path}/{name}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {}},
        )
        return str(answer["status"]["token"])

    async def compact(self, session: aiohttp.ClientSession) -> None:
        """Compact etcd at its current revision, and record it where kube-apiserver's own
        compactor does, so that the apiserver (and within 15 s its watch cache) knows."""
        if self._etcd is None:
            raise SystemExit("this group compacts etcd: give --etcd URL")
        async with aiohttp.ClientSession(self._etcd) as etcd:
            key = base64.b64encode(COMPACT_REV_KEY.encode()).decode()
            state = await _etcd(etcd, "/v3/kv/range", {"key": key})
            revision = int(state["header"]["revision"])
            value = base64.b64encode(str(revision).encode()).decode()
            await _etcd(etcd, "/v3/kv/put", {"key": key, "value": value})
            await _etcd(etcd, "/v3/kv/compaction", {"revision": str(revision), "physical": True})

    async def get(self, session: aiohttp.ClientSession, path: str) -> str:
        async with session.get(path, headers=self._headers()) as response:
            response.raise_for_status()
            return await response.text()

    async def _post(self, session: aiohttp.ClientSession, path: str, body: Any) -> Any:
        async with session.post(path, json=body, headers=self._headers()) as response:
            answer = await response.json()
            if response.status >= 300:
                raise SystemExit(f"POST {path}: HTTP {response.status}: {answer}")
            return answer

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}


async def _etcd(session: aiohttp.ClientSession, path: str, body: Any) -> Any:
    async with session.post(path, json=body) as response:
        answer = await response.json(content_type=None)
        if response.status >= 300:
            raise SystemExit(f"etcd {path}: HTTP {response.status}: {answer}")
        return answer


def feature_gates(metrics: str) -> dict[str, bool]:
    """``kubernetes_feature_enabled{name="X",stage="..."} 1`` lines of ``/metrics``."""
    gates = {}
    for match in re.finditer(
        r'^kubernetes_feature_enabled\{name="([^"]+)"[^}]*\} (\d)', metrics, re.M
    ):
        gates[match.group(1)] = match.group(2) == "1"
    return gates


async def record(args: argparse.Namespace) -> int:
    configuration = k8s_client.Configuration()
    await k8s_config.load_kube_config(
        config_file=args.kubeconfig, client_configuration=configuration
    )
    target = RealTarget(configuration, args.etcd)
    connector = aiohttp.TCPConnector(ssl=target.ssl_context)
    async with aiohttp.ClientSession(target.base_url, connector=connector) as session:
        version = json.loads(await target.get(session, "/version"))
        gates = feature_gates(await target.get(session, "/metrics"))
    if args.etcd is not None:
        async with aiohttp.ClientSession(args.etcd) as etcd, etcd.get("/version") as response:
            version["etcd"] = (await response.json(content_type=None)).get("etcdserver")
    chosen = [GROUPS[name] for name in args.group] if args.group else list(GROUPS.values())
    status = 0
    for group in chosen:
        unmet = {gate: want for gate, want in group.requires.items() if gates.get(gate) != want}
        if unmet or (group.needs_etcd and args.etcd is None):
            needs = group.server_args or "its default flags"
            etcd = " and --etcd" if group.needs_etcd and args.etcd is None else ""
            print(f"{group.name}: skipped: needs kube-apiserver with {needs}{etcd}")
            status = 1 if args.group else status
            continue
        corpus = await record_group(group, target, version)
        path = await asyncio.to_thread(write_corpus, corpus, args.out)
        print(f"{group.name}: {len(group.exchanges())} exchanges -> {path}")
    return status


async def record_group(group: Group, target: RealTarget, version: dict[str, Any]) -> dict[str, Any]:
    """Run ``group`` against the real server; its corpus (see README.md)."""
    namespace = new_namespace()
    run = await run_group(group, target, namespace)
    exchanges = [
        {
            **normalize(step, run.answers[step.name], namespace=namespace, address=target.address),
            **({"note": step.note} if step.note else {}),
        }
        for step in group.exchanges()
    ]
    return {
        "group": group.name,
        "description": group.description,
        "server": {key: version.get(key) for key in ("gitVersion", "major", "minor", "etcd")},
        "server_args": group.server_args,
        "recorded": datetime.date.today().isoformat(),
        "exchanges": exchanges,
    }


def write_corpus(corpus: dict[str, Any], out: Path) -> Path:
    """``<out>/<group>.json``: keys sorted, one per line, so a re-recording diffs cleanly."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{corpus['group']}.json"
    path.write_text(json.dumps(corpus, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.conformance.record", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--kubeconfig", required=True, help="a kubeconfig with a bearer token of a cluster admin"
    )
    parser.add_argument(
        "--etcd", help="etcd's client URL (v3 JSON gateway), for the compaction steps"
    )
    parser.add_argument(
        "--group",
        action="append",
        choices=sorted(GROUPS),
        help="record only this group (repeatable)",
    )
    parser.add_argument(
        "--out", type=Path, default=CORPUS, help="where the corpus files go (default: %(default)s)"
    )
    return asyncio.run(record(parser.parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
