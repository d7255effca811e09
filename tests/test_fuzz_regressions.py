"""Files that once broke a reader (found by the fuzz tests, saved under tests/data/fuzz/<kind>/
by ``NEUROSIM_FUZZ_KEEP=1``), replayed in every ``make test``: each must now be read or refused
with one NeurosimError naming the file, within the time limit (the reader contract)."""

from __future__ import annotations

from pathlib import Path

import pytest

import fuzzing
from fuzz_kinds import KINDS

CASES = sorted(p for p in fuzzing.CORPUS.glob("*/*") if p.is_file() and p.name != "README.md")


def test_every_kept_file_has_a_reader():
    for path in CASES:
        assert path.parent.name in KINDS, f"{path}: no reader for kind {path.parent.name!r}"


@pytest.mark.parametrize("path", CASES, ids=[f"{p.parent.name}/{p.name}" for p in CASES])
def test_a_file_that_once_failed_is_read_or_refused(path: Path):
    suffix, read = KINDS[path.parent.name]
    fuzzing.run_reader(read, path.read_bytes(), suffix)
