"""What a local sweep gives each notebook it runs at once: its share of the CPU threads
where there are no GPUs (N notebooks each starting a thread per core run slower together
than one after another), and nothing where the user chose a thread count."""

from __future__ import annotations

import os

import pytest

from pixda_core import executors

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(("cores", "jobs", "threads"), [(16, 2, "8"), (16, 3, "5"), (2, 4, "1")])
def test_notebooks_run_at_once_share_the_cores(monkeypatch, cores, jobs, threads):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cores)))
    assert executors.cpu_share(jobs) == threads


def test_a_thread_count_the_user_set_is_kept(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert executors.cpu_share(2) is None
    with executors.environment(OMP_NUM_THREADS=executors.cpu_share(2)):
        assert os.environ["OMP_NUM_THREADS"] == "3"
    assert os.environ["OMP_NUM_THREADS"] == "3"


def test_the_environment_is_restored_after_the_block(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("PIXDA_TEST_VALUE", "before")
    with executors.environment(OMP_NUM_THREADS="2", PIXDA_TEST_VALUE="inside"):
        assert os.environ["OMP_NUM_THREADS"] == "2"
        assert os.environ["PIXDA_TEST_VALUE"] == "inside"
    assert "OMP_NUM_THREADS" not in os.environ
    assert os.environ["PIXDA_TEST_VALUE"] == "before"
