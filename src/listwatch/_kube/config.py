"""``connect()``: an ``ApiClient`` for a cluster, from a kubeconfig or the pod's service account.

kubernetes_asyncio's loaders write into a process-wide default configuration unless given one
of their own; every program that mirrors more than one cluster (or runs beside other client
code) needs the same few lines to avoid that, so they live here once.
"""

from __future__ import annotations

import os

from kubernetes_asyncio import config
from kubernetes_asyncio.client import ApiClient, Configuration


async def connect(
    kubeconfig: str | os.PathLike[str] | None = None,
    *,
    context: str | None = None,
    in_cluster: bool | None = None,
) -> ApiClient:
    """An ``ApiClient`` with a configuration of its own; the caller closes it.

    ``in_cluster=None`` (the default) uses the pod's service account when running in a
    cluster and neither ``kubeconfig`` nor ``context`` is given, else the kubeconfig
    (``kubeconfig``, ``$KUBECONFIG`` or ``~/.kube/config``) and its ``context``.
    """
    if in_cluster is None:
        in_cluster = (
            kubeconfig is None and context is None and "KUBERNETES_SERVICE_HOST" in os.environ
        )
    configuration = Configuration()
    if in_cluster:
        # kubernetes_asyncio leaves this one loader unannotated.
        config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
    else:
        path = os.fspath(kubeconfig) if kubeconfig is not None else None
        await config.load_kube_config(
            config_file=path, context=context, client_configuration=configuration
        )
    return ApiClient(configuration=configuration)
