"""The small shared helpers: atomic writes and their permissions, plain values, number formats."""

from __future__ import annotations

import math
import os
import stat
from pathlib import Path

import numpy as np
import pytest

from proxyscope._format import MISSING, interval, json_value, num, plain
from proxyscope._io import write_atomic, write_text_atomic


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_a_new_file_gets_the_umask_permissions(tmp_path: Path, mask: int) -> None:
    old = os.umask(mask)
    try:
        written = write_text_atomic(tmp_path / "report.md", "x")
        opened = tmp_path / "plain.md"
        opened.write_text("x")  # what open(path, "w") gives, for comparison
    finally:
        os.umask(old)
    assert mode(written) == 0o666 & ~mask == mode(opened)


def test_a_replaced_file_keeps_its_permissions(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("old")
    target.chmod(0o640)
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert mode(target) == 0o640


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "fit.nc"
    target.write_text("old")

    def fail(tmp: str) -> None:
        Path(tmp).write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        write_atomic(target, fail)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["fit.nc"]


def test_plain_values() -> None:
    assert plain(np.int64(3)) == 3 and type(plain(np.int64(3))) is int
    assert type(plain(np.float32(0.5))) is float
    assert plain(np.str_("a")) == "a" and type(plain(np.str_("a"))) is str
    assert plain((np.int8(1), [np.float64(2.0)])) == [1, [2.0]]
    assert plain(np.array([1, 2])) == "[1 2]"  # not a scalar: its text
    assert math.isnan(plain(float("nan")))
    assert json_value([np.float64("nan"), np.inf, 1.5, None]) == [None, None, 1.5, None]


def test_number_formats() -> None:
    assert num(2594.4) == "2,594" and num(2598.8) == "2,599"  # 2.59e+03 and 2.6e+03 before
    assert num(0.5) == "0.5" and num(12.345) == "12.3" and num(0.0001234) == "0.000123"
    assert num(-0.00049) == "-0.00049" and num(0.0) == "0" and num(99.96) == "100"
    assert num(12345) == "12345" and num(True) == "yes"
    assert num(None) == MISSING == num(float("nan")) == num(np.inf)
    assert num("abc") == "abc" and num(0.123456, 2) == "0.12"
    assert interval(0.5, 0.25, 0.75) == "0.5 [0.25, 0.75]"
    assert interval(0.5, None, None) == "0.5"
    assert interval(1, 0, 2, fmt=lambda v: f"{v:.1f}") == "1.0 [0.0, 2.0]"
