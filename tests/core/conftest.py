"""Fixtures for the Syncer tests: a fake API server, a client for it, and a checking mirror."""

from __future__ import annotations


class MirrorViolation(AssertionError):
    pass
