"""`computebill app --workers`: a count, or `auto` for one server process per core."""

from __future__ import annotations

import os

import pytest

from computebill.cli import build_parser


def test_workers_default_to_one_process() -> None:
    assert build_parser().parse_args(["app"]).workers == 1


def test_workers_auto_is_one_process_per_core() -> None:
    assert build_parser().parse_args(["app", "--workers", "auto"]).workers == os.cpu_count()


def test_workers_takes_a_count() -> None:
    assert build_parser().parse_args(["app", "--workers", "3"]).workers == 3


@pytest.mark.parametrize("value", ["0", "-1", "many"])
def test_workers_refuses_what_is_not_a_positive_count_or_auto(value: str) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["app", "--workers", value])
