"""Shared test settings."""

import os

import pytest
from hypothesis import settings

# CI runs the property and fuzz tests on a fixed seed sequence, so a red run is
# reproducible and a green one stays green; on a workstation every run explores
# new examples (a failure found there goes into the tests as a fixed case).
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI") == "true":
    settings.load_profile("ci")


@pytest.fixture(autouse=True)
def _private_cache(monkeypatch, tmp_path_factory):
    """Each test its own pageref cache (tracer/layout_cache.py), never ~/.cache."""
    monkeypatch.setenv("PAGEREF_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
