"""Upstream lokki example flows, ported with only their imports changed (tests/test_upstream.py runs them)."""
