"""Every profile, several seeds: the monitors hold throughout, and the receiver converges.

A failure message names the profile and seed, and ends with the run's trace; replay with
``python -m tests.chaos --profile NAME --seed N --runs 1``.
"""

from __future__ import annotations

import pytest

from .profiles import PROFILES
from .runner import run_scenario

SEEDS = (1, 2, 3)
STRATEGIES = ("paged", "stream")
CI_DURATION = 2.0  # seconds of churn and faults per run


@pytest.mark.parametrize(
    ("profile", "seed", "strategy"),
    [
        pytest.param(name, seed, strategy, id=f"{name}-{strategy}-seed{seed}")
        for name in PROFILES
        for strategy in STRATEGIES
        for seed in SEEDS
    ],
)
async def test_profile(profile: str, seed: int, strategy: str) -> None:
    result = await run_scenario(profile, seed, duration=CI_DURATION, list_strategy=strategy)

    spec = PROFILES[profile]
    assert result.writes > 0
    assert result.snapshots >= 1
    assert result.batches >= 1
    # The run did stress what the profile is named after (else it proved nothing).
    if spec.faults:
        assert sum(result.faults_fired.values()) > 0, result.faults_injected
    elif spec.receiver.any:
        assert sum(n for k, n in result.receiver.items() if "raise" in k or "stall" in k) > 0
    if spec.blackout:
        # Its bound is checked inside the run; test_hot_loop.py checks it fault by fault.
        assert result.blackout is not None
