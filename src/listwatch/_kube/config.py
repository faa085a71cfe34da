"""Loading a cluster's client configuration, from a kubeconfig or the pod's service account.

``connect()`` (the library's) and ``listwatch mirror`` (the CLI's, which words the failures
as one line) both load through :func:`load_configuration`, so they cannot drift apart.
Two rules hold for every load:

* The configuration is a new one, never kubernetes_asyncio's process-wide default: a
  program that mirrors more than one cluster (or runs beside other client code) would
  otherwise have its loads overwrite each other.
* ``persist_config=False``: kubernetes_asyncio otherwise writes the kubeconfig back to disk
  whenever loading refreshes a credential in it (an OIDC ``id-token`` or a GCP
  ``access-token``), rewriting the user's file as YAML of its own (comments and layout
  gone, and a concurrent kubectl's write possibly lost); some versions instead fail the
  load there, calling their saver wrongly. listwatch never writes a file it was only asked
  to read; the refreshed token lives in the configuration.
"""

from __future__ import annotations

import os

from kubernetes_asyncio import config
from kubernetes_asyncio.client import ApiClient, Configuration


def kubeconfig_paths(kubeconfig: str | os.PathLike[str] | None) -> str:
    """The kubeconfig to load, as kubectl finds it: the one given, else ``$KUBECONFIG`` (a
    list of files that kubernetes_asyncio merges; read now, not when kubernetes_asyncio
    was imported), else ``~/.kube/config``. Several paths are joined by ``os.pathsep``."""
    if kubeconfig is not None:
        return os.fspath(kubeconfig)
    paths = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    return os.pathsep.join(paths) if paths else os.path.expanduser("~/.kube/config")


async def load_configuration(
    kubeconfig: str | os.PathLike[str] | None = None,
    *,
    context: str | None = None,
    in_cluster: bool | None = None,
) -> Configuration:
    """A new ``Configuration`` for the cluster; the loaders' own exceptions propagate.

    ``in_cluster=None``: the pod's service account when running in a cluster and neither
    ``kubeconfig`` nor ``context`` is given. Otherwise the kubeconfig
    (:func:`kubeconfig_paths`) and its ``context``.
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
        await config.load_kube_config(
            config_file=kubeconfig_paths(kubeconfig),
            context=context,
            client_configuration=configuration,
            persist_config=False,
        )
    return configuration


async def connect(
    kubeconfig: str | os.PathLike[str] | None = None,
    *,
    context: str | None = None,
    in_cluster: bool | None = None,
) -> ApiClient:
    """An ``ApiClient`` with a configuration of its own; the caller closes it.

    ``in_cluster=None`` (the default) uses the pod's service account when running in a
    cluster and neither ``kubeconfig`` nor ``context`` is given, else the kubeconfig
    (``kubeconfig``, ``$KUBECONFIG`` or ``~/.kube/config``) and its ``context``. The
    kubeconfig is only read, never written back (not even when a token in it is
    refreshed).
    """
    configuration = await load_configuration(kubeconfig, context=context, in_cluster=in_cluster)
    return ApiClient(configuration=configuration)
