"""Who may write which cluster: each credential the receiver accepts names exactly one cluster.

A sender never names its cluster: the receiver learns it from the credential, so a
credential can write its own cluster's rows and nothing else. The clients file (TOML,
``listwatch receiver --clients FILE``)::

    [[cluster]]
    name = "prod-eu-1"                      # 1-63 letters, digits, '.', '_', '-'
    token_sha256 = "9f86d081884c7d65..."    # hex SHA-256 of the bearer token; a list of
                                            # them while a token is rotated
    certificate_cn = ["agent.prod-eu-1"]    # optional: client certificates' common names
                                            # (mutual TLS), a string or a list
    max_objects = 200000                    # optional caps over all the cluster's resources
    max_bytes = 2000000000                  # (bytes of objects' JSON)

Why digests: the file lists every cluster's credential, and a digest grants nothing to
whoever reads it (``printf %s "$TOKEN" | sha256sum``). A presented token is hashed and looked
up; comparing digests reveals nothing of a token even through timing. Every key is checked:
an unknown one (a cap misspelt) or a credential given to two clusters makes the file
invalid, since a cap silently ignored or a credential of two clusters is worse than none.

Reloading: ``ClientsFile.current`` notices a changed file (its inode, size or mtime, so a
Kubernetes Secret's symlink swap counts) at the next request, and ``reload`` reads it at
once (``listwatch receiver`` calls it on SIGHUP). A file that cannot be used is logged at
ERROR, once per change, and the previous table stays in force: a broken edit must not lock
the whole fleet out. The first read has no previous table and raises.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from listwatch.sinks._base import DEFAULT_CLUSTER, Limits, check_cluster

__all__ = ["Client", "Clients", "ClientsFile", "SingleCluster", "TokenFile"]

logger = logging.getLogger("listwatch.httpsync.clients")

_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
_GONE = (-1, -1, -1)
"""The stamp of a clients file that cannot be found."""
_ENTRY_KEYS = frozenset({"name", "token_sha256", "certificate_cn", "max_objects", "max_bytes"})


class TokenFile:
    """A bearer token read from a file, and read again when the file changes (rotated
    secrets are picked up without a restart)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stamp: tuple[int, int] | None = None
        self._token = ""
        self.read()

    def read(self) -> str:
        stat = self._path.stat()
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            token = self._path.read_text().strip()
            if not token:
                raise ValueError(f"token file {self._path} is empty")
            self._token, self._stamp = token, stamp
        return self._token


@dataclass(frozen=True)
class Client:
    """One cluster as the receiver knows it: its name and its caps."""

    cluster: str
    limits: Limits = field(default_factory=Limits)


@dataclass(frozen=True)
class Clients:
    """The credentials in force: token digests and certificate names, each to one client."""

    by_token: Mapping[bytes, Client] = field(default_factory=dict)
    by_certificate: Mapping[str, Client] = field(default_factory=dict)
    any_certificate: Client | None = None
    """The client of every verified certificate whose name is not listed (a receiver that
    serves one cluster over mutual TLS alone), or ``None``."""

    def for_token(self, token: str) -> Client | None:
        return self.by_token.get(hashlib.sha256(token.encode()).digest())

    def for_certificate(self, common_name: str | None) -> Client | None:
        if common_name is not None and common_name in self.by_certificate:
            return self.by_certificate[common_name]
        return self.any_certificate

    @property
    def clusters(self) -> dict[str, Client]:
        clients = [*self.by_token.values(), *self.by_certificate.values()]
        if self.any_certificate is not None:
            clients.append(self.any_certificate)
        return {client.cluster: client for client in clients}


def parse_clients(text: str) -> Clients:
    """The clients file's table; ``ValueError`` naming what is wrong (never a credential:
    the file holds digests only, and a digest quoted back is one the reader has)."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"not valid TOML: {exc}") from None
    unknown = set(document) - {"cluster"}
    if unknown:
        raise ValueError(f"unknown top-level keys {sorted(unknown)}: only [[cluster]] entries")
    entries = document.get("cluster")
    if not isinstance(entries, list) or not entries:
        raise ValueError("no [[cluster]] entries: the receiver would accept no one")
    by_token: dict[bytes, Client] = {}
    by_certificate: dict[str, Client] = {}
    names: set[str] = set()
    for number, entry in enumerate(entries, 1):
        where = f"[[cluster]] #{number}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: not a table")
        unknown = set(entry) - _ENTRY_KEYS
        if unknown:
            raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
        if "name" not in entry:
            raise ValueError(f"{where}: no name")
        try:
            name = check_cluster(entry["name"])
            limits = Limits(_cap(entry, "max_objects"), _cap(entry, "max_bytes"))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        where = f"[[cluster]] {name!r}"
        if name in names:
            raise ValueError(f"{where}: named twice")
        names.add(name)
        client = Client(name, limits)
        digests = list(_strings(entry, "token_sha256", where))
        common_names = list(_strings(entry, "certificate_cn", where))
        if not digests and not common_names:
            raise ValueError(f"{where}: no credential (token_sha256 or certificate_cn)")
        for digest in digests:
            if not _DIGEST.fullmatch(digest):
                raise ValueError(f"{where}: token_sha256 must be 64 hex digits")
            key = bytes.fromhex(digest)
            if key in by_token:
                raise ValueError(
                    f"{where}: a token_sha256 of cluster {by_token[key].cluster!r} too: a "
                    "credential names exactly one cluster"
                )
            by_token[key] = client
        for common_name in common_names:
            if common_name in by_certificate:
                raise ValueError(
                    f"{where}: certificate_cn {common_name!r} is cluster "
                    f"{by_certificate[common_name].cluster!r}'s too: a credential names "
                    "exactly one cluster"
                )
            by_certificate[common_name] = client
    return Clients(by_token, by_certificate)


def _cap(entry: dict[str, Any], key: str) -> int | None:
    value = entry.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{key} must be a whole number, not {value!r}")
    return value


def _strings(entry: dict[str, Any], key: str, where: str) -> Iterator[str]:
    value = entry.get(key, [])
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
        raise ValueError(f"{where}: {key} must be a string or a list of strings")
    yield from values


class ClientsFile:
    """The clients file, read again when it changes or when asked (SIGHUP)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stamp, self._clients = self._read()
        self._refused: tuple[int, int, int] | None = None

    @property
    def path(self) -> Path:
        return self._path

    def _stat(self) -> tuple[int, int, int]:
        stat = self._path.stat()
        return stat.st_ino, stat.st_size, stat.st_mtime_ns

    def _stat_or_gone(self) -> tuple[int, int, int]:
        try:
            return self._stat()
        except OSError:
            return _GONE

    def _read(self) -> tuple[tuple[int, int, int], Clients]:
        stamp = self._stat()
        try:
            text = self._path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise ValueError("not UTF-8 text") from None
        return stamp, parse_clients(text)

    def current(self) -> Clients:
        """The table in force; a changed file is read first (a broken one is logged once and
        the previous table stays)."""
        if self._stat_or_gone() not in (self._stamp, self._refused):
            self.reload()
        return self._clients

    def reload(self) -> bool:
        """Read the file now; False (and an ERROR line) if it cannot be used."""
        try:
            self._stamp, self._clients = self._read()
        except (OSError, ValueError) as exc:
            self._refused = self._stat_or_gone()
            logger.error(
                "clients file %s: %s; the previous one (%d clusters) stays in force",
                self._path,
                " ".join(str(exc).split()),
                len(self._clients.clusters),
                extra={"path": os.fspath(self._path)},
            )
            return False
        self._refused = None
        logger.info(
            "clients file %s: %d clusters",
            self._path,
            len(self._clients.clusters),
            extra={"path": os.fspath(self._path)},
        )
        return True


class SingleCluster:
    """One cluster's credentials, without a clients file: a bearer token (a string, or a
    ``TokenFile`` read again when it changes) and/or any verified client certificate.

    With a token, every request must carry it (a certificate, if the TLS layer asks for one,
    does not replace it); with certificates alone, every verified certificate is the
    cluster's."""

    def __init__(
        self,
        token: str | TokenFile | None,
        *,
        cluster: str = DEFAULT_CLUSTER,
        client_certificate: bool = False,
        limits: Limits | None = None,
    ) -> None:
        self._token = token
        self._client = Client(check_cluster(cluster), limits or Limits())
        self._any_certificate = self._client if client_certificate and token is None else None
        self._seen: str | None = None
        self._clients = Clients(any_certificate=self._any_certificate)

    @property
    def cluster(self) -> str:
        return self._client.cluster

    def current(self) -> Clients:
        token = self._token.read() if isinstance(self._token, TokenFile) else self._token
        if token != self._seen:
            digests = [] if token is None else [hashlib.sha256(token.encode()).digest()]
            self._clients = Clients(
                dict.fromkeys(digests, self._client), any_certificate=self._any_certificate
            )
            self._seen = token
        return self._clients

    def reload(self) -> bool:
        return True
