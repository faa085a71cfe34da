"""Tests of listwatch.testing.FakeApiServer, over HTTP."""
