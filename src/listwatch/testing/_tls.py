"""HTTPS for the fake server: a certificate authority of its own, made fresh per server.

kube-apiserver serves HTTPS only, and clients verify it against the cluster's CA (the
kubeconfig's ``certificate-authority-data``). So does the fake: each server makes a new CA
with trustme (a library made for exactly this: throwaway CAs for tests) and a leaf
certificate for ``127.0.0.1``, ``localhost`` and ``::1`` (and the address a server listens
on when it is another; for a wildcard, this machine's host name). A client that trusts this CA
trusts no other host and no other server's certificate.

Clients get the trust three ways: :meth:`ServerTls.client_context` (an ``ssl`` context for
raw aiohttp), :attr:`ServerTls.ca_pem` (for ``Configuration.ssl_ca_cert``), and the
kubeconfig written by ``FakeApiServer.write_kubeconfig`` (the CA embedded as
``certificate-authority-data``).
"""

from __future__ import annotations

import base64
import ssl
from typing import Any

HOSTS = ("127.0.0.1", "localhost", "::1")


def _trustme() -> Any:
    try:
        import trustme  # noqa: PLC0415 - an extra: imported only when HTTPS is asked for
    except ImportError as exc:  # pragma: no cover - depends on the installation
        raise ImportError(
            "FakeApiServer(tls=True) needs trustme, from listwatch's 'testing' extra "
            "(python -m pip install '.[testing]' in a clone of listwatch)"
        ) from exc
    return trustme


class ServerTls:
    """One server's CA and leaf certificate, and the ``ssl`` contexts made from them."""

    def __init__(self, extra_hosts: tuple[str, ...] = ()) -> None:
        trustme = _trustme()
        self._ca = trustme.CA(organization_name="listwatch fake API server")
        hosts = dict.fromkeys((*HOSTS, *extra_hosts))
        self._leaf = self._ca.issue_cert(*hosts, common_name="kube-apiserver")

    @property
    def ca_pem(self) -> bytes:
        """The CA certificate (PEM): the only trust a client of this server needs."""
        pem: bytes = self._ca.cert_pem.bytes()
        return pem

    @property
    def ca_base64(self) -> str:
        """The CA as a kubeconfig's ``certificate-authority-data`` holds it."""
        return base64.b64encode(self.ca_pem).decode()

    def server_context(self) -> ssl.SSLContext:
        """What the listener serves: TLS 1.2 or newer, the leaf certificate and its chain."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols(["http/1.1"])  # aiohttp serves HTTP/1.1 only
        self._leaf.configure_cert(context)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context (hostname checked) that trusts this CA only."""
        context = ssl.create_default_context(cadata=self.ca_pem.decode())
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context
