"""A kubeconfig pointing at the fake server, for code that loads its configuration itself.

Written as JSON, which is valid YAML, so neither this package nor its users need a YAML
writer; ``kubernetes_asyncio.config.load_kube_config`` reads it as any kubeconfig.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from listwatch.testing._store import JsonDict

CONTEXT_NAME = "listwatch-fake"


def kubeconfig(url: str, token: str, *, ca_data: str | None = None) -> JsonDict:
    """A kubeconfig with one cluster, one token user and one current context.

    ``ca_data`` (base64 PEM) is the CA the cluster's certificate is verified against, as
    ``certificate-authority-data``: the kubeconfig is then complete on its own.
    """
    cluster: JsonDict = {"server": url}
    if ca_data is not None:
        cluster["certificate-authority-data"] = ca_data
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT_NAME, "cluster": cluster}],
        "users": [{"name": CONTEXT_NAME, "user": {"token": token}}],
        "contexts": [
            {
                "name": CONTEXT_NAME,
                "context": {"cluster": CONTEXT_NAME, "user": CONTEXT_NAME, "namespace": "default"},
            }
        ],
        "current-context": CONTEXT_NAME,
        "preferences": {},
    }


def write_kubeconfig(
    path: str | os.PathLike[str], url: str, token: str, *, ca_data: str | None = None
) -> None:
    """Write the kubeconfig readable by its owner only: it holds a credential."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(kubeconfig(url, token, ca_data=ca_data), handle, indent=2)
        handle.write("\n")
