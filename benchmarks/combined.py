"""One table for every interpreter measured: ``benchmarks/results/latest.{md,json}``.

``python -m benchmarks`` measures under the interpreter that runs it and writes
``latest-<major.minor>.{md,json}``; ``nox -s bench`` runs it under each Python of the bench
session (3.11 and 3.13), each time followed by the sink benchmark of ``benchmarks.sinks_ceiling``
when that module exists (it writes ``sinks-<major.minor>.json``). This module folds whatever
per-Python results are there into one table: each target a row, each Python a column, the
sink ratios beside the watch ones; the per-Python detail follows. A ratio is always one
interpreter's listwatch against the same interpreter's ceiling, measured side by side in one
run: comparing rows across columns compares interpreters, never runs of one client.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["combine"]


def _load(path: Path) -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _sink_targets(sinks: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for row in sinks.get("rows", []):
        ratio, goal = float(row["ratio"]), float(row["target"])
        rows.append(
            {
                "target": f"SINK {row['name']}: listwatch/s vs the ceiling/s "
                f"({row['listwatch_per_s']:,.0f} vs {row['ceiling_per_s']:,.0f})",
                "key": f"SINK {row['name']}: rows/s vs the ceiling",
                "measured": ratio,
                "goal": f">= {goal:g}x",
                "result": "PASS" if ratio >= goal else "FAIL",
            }
        )
    return rows


def combine(results: Path, stem: str = "latest") -> Path:
    """Fold ``<stem>-X.Y.json`` (and ``sinks-X.Y.json``) into ``<stem>.{md,json}``."""
    runs: dict[str, dict[str, Any]] = {}
    for path in sorted(results.glob(f"{stem}-*.json")):
        report = _load(path)
        if report is None or "machine" not in report:
            continue
        minor = _minor(report["machine"]["python"])
        runs[minor] = report
    sinks: dict[str, dict[str, Any]] = {}
    for minor in runs:
        found = _load(results / f"sinks-{minor}.json")
        if found is not None:
            sinks[minor] = found
    pythons = sorted(runs, key=lambda v: tuple(int(p) for p in v.split(".")))
    rows: dict[str, dict[str, Any]] = {}
    for minor in pythons:
        for t in runs[minor]["targets"] + _sink_targets(sinks.get(minor, {})):
            key = t.get("key", t["target"])
            row = rows.setdefault(key, {"target": key, "goal": t["goal"]})
            row[minor] = {"measured": t["measured"], "result": t["result"]}
    combined = {
        "pythons": {m: runs[m]["machine"]["python"] for m in pythons},
        "rows": list(rows.values()),
        "runs": runs,
        "sinks": sinks,
    }
    (results / f"{stem}.json").write_text(json.dumps(combined, indent=1) + "\n")
    (results / f"{stem}.md").write_text(markdown(combined))
    return results / f"{stem}.md"


def markdown(combined: dict[str, Any]) -> str:
    pythons: dict[str, str] = combined["pythons"]
    runs: dict[str, dict[str, Any]] = combined["runs"]
    out = ["# listwatch benchmarks, " + " and ".join(f"Python {v}" for v in pythons.values())]
    out.append("")
    for minor, report in runs.items():
        m = report["machine"]
        out.append(
            f"- Python {m['python']}: {report['date']}, {report['elapsed_s'] / 60:.1f} min, "
            f"`{report['command']}`, load "
            f"{report['load']['min']:.2f}..{report['load']['max']:.2f}; "
            + ", ".join(f"{k} {v}" for k, v in m["versions"].items())
            + f"; commit {m['commit']}"
            + ("" if minor in combined["sinks"] else "; no sink figures (sinks-X.Y.json absent)")
        )
    if runs:
        m = next(iter(runs.values()))["machine"]
        out.append(
            f"- machine: {m['cpus']} CPUs ({m['cpu_model']}), {m['memory_gb']} GB, {m['platform']}"
        )
    out += [
        "",
        "Each ratio is listwatch against the ceiling under the same interpreter, clients run "
        "interleaved round by round in fresh processes (WATCH ceiling: aiohttp `readline()` + "
        "`orjson.loads` per line). Targets are reported, never asserted in tests.",
        "",
        "| target | goal | " + " | ".join(f"Python {v}" for v in pythons.values()) + " |",
        "|---|---|" + "---|" * len(pythons),
    ]
    for row in combined["rows"]:
        cells = []
        for minor in pythons:
            cell = row.get(minor)
            cells.append(f"{cell['measured']:,.2f} {cell['result']}" if cell else "")
        out.append(f"| {row['target']} | {row['goal']} | " + " | ".join(cells) + " |")
    for report in runs.values():
        from benchmarks.run import markdown as detail  # noqa: PLC0415 - run imports this module

        body = detail(report).split("\n", 1)[1]
        out += ["", f"# Python {report['machine']['python']} in detail", body]
    return "\n".join(out) + "\n"
