"""``listwatch mirror --config FILE``: per-resource settings in TOML.

The command line names resources and gives settings for all of them; a config file gives
each resource its own (a namespace for one, a selector for another, metadata only for the
big ones)::

    # mirror.toml
    [[resource]]
    name = "pods"                      # as kubectl writes it: pods, deployments.apps, ...
    metadata_only = true

    [[resource]]
    name = "deployments.apps"
    namespace = "prod"
    label_selector = "app=web"
    field_selector = "metadata.name!=canary"

A resource's own setting wins over the command line's, which wins over the default. The
resources mirrored are those the command line names and those the file lists, each once.
Unknown keys are refused: a typo must not silently mirror everything.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from listwatch.cli._runtime import CliError

__all__ = ["ResourceSpec", "load_specs"]


@dataclass(frozen=True, slots=True)
class ResourceSpec:
    """One resource to mirror, as the user wrote it, with its list/watch options."""

    name: str
    namespace: str | None = None
    label_selector: str | None = None
    field_selector: str | None = None
    metadata_only: bool = False


_STRING_KEYS = ("namespace", "label_selector", "field_selector")
_KEYS = {"name", "metadata_only", *_STRING_KEYS}
_MAX_CONFIG_BYTES = 1024 * 1024


def load_specs(
    names: Iterable[str], defaults: ResourceSpec, config: Path | None
) -> list[ResourceSpec]:
    """The resources to mirror: ``names`` with ``defaults``, then the config file's own."""
    from_file = _read(config) if config is not None else {}
    specs: dict[str, ResourceSpec] = {}
    for name in names:
        if name in specs:
            raise CliError(f"resource {name!r} is named twice")
        specs[name] = replace(defaults, name=name)
    for name, settings in from_file.items():
        specs[name] = _apply(replace(defaults, name=name), settings, where=f"{config}: {name}")
    if not specs:
        raise CliError(
            "no resource to mirror: name one (pods, deployments.apps, ...) or use --config"
        )
    return list(specs.values())


def _read(path: Path) -> dict[str, Mapping[str, Any]]:
    try:
        with path.open("rb") as file:
            text = file.read(_MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise CliError(f"cannot read config {path}: {exc.strerror or exc}") from None
    if len(text) > _MAX_CONFIG_BYTES:
        raise CliError(f"config {path} is larger than {_MAX_CONFIG_BYTES} bytes")
    try:
        document = tomllib.loads(text.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise CliError(f"config {path} is not valid TOML: {exc}") from None
    unknown = set(document) - {"resource"}
    if unknown:
        raise CliError(f"config {path}: unknown keys {sorted(unknown)} (expected [[resource]])")
    entries = document.get("resource", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise CliError(f"config {path}: 'resource' must be an array of tables ([[resource]])")
    by_name: dict[str, Mapping[str, Any]] = {}
    for index, entry in enumerate(entries, 1):
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise CliError(f'config {path}: resource #{index} needs a name (such as "pods")')
        if name in by_name:
            raise CliError(f"config {path}: resource {name!r} is listed twice")
        by_name[name] = entry
    return by_name


def _apply(spec: ResourceSpec, settings: Mapping[str, Any], *, where: str) -> ResourceSpec:
    unknown = set(settings) - _KEYS
    if unknown:
        raise CliError(f"{where}: unknown keys {sorted(unknown)} (known: {sorted(_KEYS)})")
    changes: dict[str, Any] = {}
    for key in _STRING_KEYS:
        if key in settings:
            value = settings[key]
            if not isinstance(value, str) or not value:
                raise CliError(f"{where}: {key} must be a non-empty string")
            changes[key] = value
    if "metadata_only" in settings:
        if not isinstance(settings["metadata_only"], bool):
            raise CliError(f"{where}: metadata_only must be true or false")
        changes["metadata_only"] = settings["metadata_only"]
    return replace(spec, **changes)


def describe(specs: Sequence[ResourceSpec]) -> str:
    """``pods, deployments.apps (prod, app=web)`` for a status line."""
    parts = []
    for spec in specs:
        extra = [
            v for v in (spec.namespace, spec.label_selector, spec.field_selector) if v is not None
        ]
        if spec.metadata_only:
            extra.append("metadata only")
        parts.append(f"{spec.name} ({', '.join(extra)})" if extra else spec.name)
    return ", ".join(parts)
