"""The report tests' one arrangement: statsmodels' Holm correction runs a full ``gc.collect()``
on every call (0.1-0.4 s in a test process that holds torch and pandas); here it is skipped,
which changes nothing computed."""

import gc

import pytest


@pytest.fixture(autouse=True)
def _no_full_collections(monkeypatch):
    monkeypatch.setattr(gc, "collect", lambda generation=2: 0)
