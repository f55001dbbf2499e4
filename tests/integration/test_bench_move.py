"""`make bench-move` at scale 1: the dump restored into the second server has every row of the first,
and every figure is measured."""

from __future__ import annotations

import pytest

from tools.bench_move import TABLES, measure

pytestmark = pytest.mark.integration

SCALE = 1


def test_the_move_at_scale_1_restores_every_row_and_measures_each_step() -> None:
    figures = measure(SCALE)
    rows = figures["rows"]
    assert isinstance(rows, dict)
    assert rows["source"] == rows["target"]
    assert rows["source"] == {
        "pgbench_accounts": 100_000 * SCALE,
        "pgbench_branches": SCALE,
        "pgbench_tellers": 10 * SCALE,
        "pgbench_history": 0,
    }
    assert set(rows["source"]) == set(TABLES)
    assert figures["pgbench_scale"] == SCALE
    for name, kind in (
        ("database_bytes", int),
        ("restored_database_bytes", int),
        ("dump_bytes", int),
        ("dump_seconds", float),
        ("restore_seconds", float),
        ("total_seconds", float),
    ):
        value = figures[name]
        assert isinstance(value, kind) and value > 0, (name, value)
