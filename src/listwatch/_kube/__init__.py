"""The Kubernetes transport: the only code that talks to kube-apiserver.

Everything here is private. It turns HTTP answers into listwatch's values and errors:
``config`` loads a kubeconfig or the in-cluster config, ``http`` sends every request (the
Lease client's too) and maps its failures, ``resource`` lists and watches one resource,
``discovery`` resolves kubectl-style names. Nothing above this package sees an aiohttp or
kubernetes_asyncio exception.
"""
