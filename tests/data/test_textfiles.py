"""Reading the text files users write (pixda_core.textfiles and its readers), fuzzed."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pixda_core.data import read_list_file, read_split
from pixda_core.train.rundir import read_metrics
from tests.helpers import CONTENT, FUZZ, read_each

pytestmark = pytest.mark.data


READERS = [(read_split, "split.txt"), (read_list_file, "list.txt"),
           (read_metrics, "metrics.json")]  # fmt: skip


@FUZZ
@given(CONTENT, st.sampled_from(READERS))
def test_split_list_and_metrics_files(content, reader):
    read_each(reader[0], content, reader[1])
