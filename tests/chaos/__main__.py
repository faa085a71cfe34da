"""The long soak: ``python -m tests.chaos --minutes 30`` (or ``nox -s soak -- --minutes 30``).

Runs scenarios one after another, cycling through the profiles with fresh seeds, until the
time is up (or ``--runs`` runs), then prints a report: runs, faults injected and fired per
class, receiver faults, restarts by cause, convergence time (median, max) and peak memory.
A failing run prints its ``ChaosFailure`` (seed, replay command, trace) at once; the soak
goes on unless ``--stop-on-failure``, and exits 1 if any run failed.

Replay one run: ``python -m tests.chaos --profile chaos --seed 3 --runs 1 --duration 2``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import resource
import shlex
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

from .monitors import ChaosFailure
from .profiles import PROFILES
from .runner import RunResult, median_and_max, run_scenario


@dataclass
class Report:
    results: list[RunResult] = field(default_factory=list)
    failures: list[tuple[str, int, str]] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def render(self, command: str) -> str:
        results = self.results
        lines = ["", "=" * 78, "listwatch chaos soak report", "=" * 78]
        lines.append(f"command:     {command}")
        lines.append(f"wall time:   {(time.monotonic() - self.started) / 60:.1f} min")
        runs = len(results) + len(self.failures)
        by_profile = Counter(r.profile for r in results) + Counter(p for p, _, _ in self.failures)
        lines.append(
            f"runs:        {runs} ({len(results)} passed, {len(self.failures)} failed); "
            + ", ".join(f"{name} {by_profile[name]}" for name in PROFILES if by_profile[name])
        )
        seeds = sorted({r.seed for r in results})
        if seeds:
            lines.append(f"seeds:       {seeds[0]}..{seeds[-1]}")
        lines.append(
            "quirks:      "
            + ", ".join(f"{k} {v}" for k, v in sorted(Counter(r.quirk for r in results).items()))
        )

        injected: Counter[str] = Counter()
        fired: Counter[str] = Counter()
        for result in results:
            injected.update(result.faults_injected)
            fired.update(result.faults_fired)
        lines.append("faults per class (injected / fired):")
        for name in sorted(injected):
            lines.append(f"  {name:<22} {injected[name]:>7} / {fired[name]:<7}")
        lines.append(f"  {'total':<22} {sum(injected.values()):>7} / {sum(fired.values()):<7}")

        blackouts = [r.blackout for r in results if r.blackout is not None]
        if blackouts:
            worst = max(blackouts, key=lambda b: b.requests / b.bound)
            lines.append(
                f"blackouts (every request fails): {len(blackouts)}, "
                f"{sum(b.requests for b in blackouts)} requests in "
                f"{sum(b.window for b in blackouts):.1f} s; highest share of the backoff "
                f"bound {worst.requests}/{worst.bound}"
            )
        receiver: Counter[str] = Counter()
        restarts: Counter[str] = Counter()
        requests: Counter[str] = Counter()
        for result in results:
            receiver.update(result.receiver)
            restarts.update(result.restarts)
            requests.update(result.requests)
        lines.append(
            "receiver calls and faults: "
            + ", ".join(f"{k} {v}" for k, v in sorted(receiver.items()))
        )
        lines.append(
            "syncer restarts by cause: " + ", ".join(f"{k} {v}" for k, v in restarts.most_common())
        )
        lines.append("requests: " + ", ".join(f"{k} {v}" for k, v in sorted(requests.items())))
        lines.append(
            f"writes: {sum(r.writes for r in results)} "
            f"(objects of 1-5 MiB written: {sum(r.big_objects for r in results)})"
        )
        median, worst_time = median_and_max([r.convergence for r in results])
        lines.append(
            f"convergence after the faults stop: median {median:.3f} s, max {worst_time:.3f} s "
            f"(over {len(results)} runs)"
        )
        lines.append(
            f"peak queued events: {max((r.peak_queued for r in results), default=0)}, "
            f"peak pending keys: {max((r.peak_pending for r in results), default=0)}"
        )
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        lines.append(f"peak memory: {rss:.0f} MiB max RSS (server, client and monitors)")
        if self.failures:
            lines.append("FAILURES:")
            for profile, seed, first_line in self.failures:
                lines.append(f"  {profile} seed={seed}: {first_line}")
        return "\n".join(lines)


async def soak(args: argparse.Namespace) -> Report:
    report = Report()
    profiles = args.profile or list(PROFILES)
    strategies = args.list_strategy or ["paged", "stream"]
    deadline = time.monotonic() + args.minutes * 60 if args.minutes else None
    index = 0
    while True:
        if args.runs is not None and index >= args.runs:
            break
        if deadline is not None and time.monotonic() >= deadline:
            break
        profile = profiles[index % len(profiles)]
        seed = args.seed + index // len(profiles)
        strategy = strategies[(index // len(profiles)) % len(strategies)]
        duration = args.duration or random.Random(f"duration:{seed}").uniform(2.0, 12.0)
        index += 1
        try:
            result = await run_scenario(
                profile, seed, duration=round(duration, 1), list_strategy=strategy
            )
        except ChaosFailure as failure:
            text = str(failure)
            print(f"FAILED {profile} {strategy} seed={seed}\n{text}", flush=True)
            report.failures.append((f"{profile} {strategy}", seed, text.splitlines()[0][:300]))
            if args.stop_on_failure:
                break
            continue
        report.results.append(result)
        print(result.summary(), flush=True)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--minutes", type=float, default=None, help="soak this long")
    parser.add_argument("--runs", type=int, default=None, help="stop after this many runs")
    parser.add_argument(
        "--profile", action="append", choices=list(PROFILES), help="only these (repeatable)"
    )
    parser.add_argument("--seed", type=int, default=1000, help="the first seed")
    parser.add_argument(
        "--list-strategy",
        action="append",
        choices=["paged", "stream"],
        help="only these list strategies (repeatable; default: both, alternating)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=None,
        help="seconds of churn and faults per run (default: 2-12, drawn from the seed)",
    )
    parser.add_argument("--stop-on-failure", action="store_true")
    args = parser.parse_args(argv)
    if args.minutes is None and args.runs is None:
        args.minutes = 30.0
    command = "python -m tests.chaos " + shlex.join(sys.argv[1:] if argv is None else argv)
    report = asyncio.run(soak(args))
    print(report.render(command), flush=True)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
