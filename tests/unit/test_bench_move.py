"""`make bench-move` and `make bench-restore`: the bounds of --scale, and the move's row check."""

from __future__ import annotations

import argparse
from collections.abc import Callable

import pytest

import tools.bench_move
import tools.bench_restore
from tools.bench_move import TABLES, check_rows
from tools.pgbench_db import DEFAULT_SCALE, add_scale_argument


def parsed_scale(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    add_scale_argument(parser)
    return int(parser.parse_args(list(argv)).scale)


def test_scale_defaults_to_about_1_gb_and_takes_its_bounds() -> None:
    assert parsed_scale() == DEFAULT_SCALE == 70
    assert parsed_scale("--scale", "1") == 1
    assert parsed_scale("--scale", "200") == 200


@pytest.mark.parametrize("main", [tools.bench_move.main, tools.bench_restore.main])
@pytest.mark.parametrize("value", ["0", "201", "-5", "ten"])
def test_a_scale_out_of_bounds_ends_before_anything_starts(
    main: Callable[[list[str] | None], int], value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as ended:
        main(["--scale", value])
    assert ended.value.code == 2
    assert "--scale" in capsys.readouterr().err


def test_equal_row_counts_pass() -> None:
    counts = {table: 10 for table in TABLES}
    check_rows(counts, dict(counts))


@pytest.mark.parametrize(
    "target",
    [
        {**{table: 10 for table in TABLES}, "pgbench_accounts": 9},
        {table: 10 for table in TABLES if table != "pgbench_history"},
    ],
)
def test_a_row_lost_or_a_table_missing_fails_the_move(target: dict[str, int]) -> None:
    with pytest.raises(SystemExit, match="row counts differ"):
        check_rows({table: 10 for table in TABLES}, target)


def test_a_source_without_the_pgbench_tables_fails_the_move() -> None:
    with pytest.raises(SystemExit, match="row counts differ"):
        check_rows({}, {})
