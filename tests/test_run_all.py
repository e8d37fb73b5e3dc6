"""benchmarks/run_all.py: a run of some benchmarks keeps the figures of the others in RESULTS.md."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))

from run_all import merged_sections  # noqa: E402


def test_fresh_sections_replace_theirs_and_the_others_are_kept_in_order():
    previous = "# Benchmark results\n\nLatest run: then.\n\n## A\n\nold a\n\n## B\n\nold b\n\n## C\n\nold c\n"
    merged = merged_sections(previous, ["## B\n\nnew b\n", "## D\n\nnew d\n"])
    assert merged == ["## A\n\nold a\n", "## B\n\nnew b\n", "## C\n\nold c\n", "## D\n\nnew d\n"]


def test_a_first_run_has_only_its_own_sections():
    assert merged_sections("", ["## A\n\na\n"]) == ["## A\n\na\n"]
