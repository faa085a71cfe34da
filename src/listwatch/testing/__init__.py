"""Test support: a strict fake Kubernetes API server that speaks real HTTP."""
