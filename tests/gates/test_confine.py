"""Confinement of staged names to the work directory: '..', absolute names, symlinks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gates.base import StagingError
from gates.confine import confined, output_matches, regular_file


@pytest.mark.parametrize(
    "name",
    ["../escape", "a/../../escape", "/etc/passwd", "", ".", "a\\b", "x\x00y", "a/.."],
)
def test_names_that_leave_or_name_the_work_directory_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(StagingError):
        confined(tmp_path, name)


def test_a_plain_relative_name_is_placed_inside_the_work_directory(tmp_path: Path) -> None:
    assert confined(tmp_path, "data/./in.txt") == tmp_path.resolve() / "data" / "in.txt"


def test_an_input_cannot_be_written_through_a_symlinked_directory(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    (work / "data").symlink_to(outside)
    with pytest.raises(StagingError, match="symbolic link"):
        confined(work, "data/in.txt")


def test_an_input_cannot_replace_a_symlink(tmp_path: Path) -> None:
    (tmp_path / "in.txt").symlink_to("/etc/passwd")
    with pytest.raises(StagingError, match="symbolic link"):
        confined(tmp_path, "in.txt")


def test_an_output_that_is_a_symlink_to_outside_is_refused(tmp_path: Path) -> None:
    (tmp_path / "result").symlink_to("/etc/hostname")
    with pytest.raises(StagingError, match="symbolic link"):
        regular_file(tmp_path, "result")


def test_an_output_that_is_a_directory_or_missing_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(StagingError, match="not a regular file"):
        regular_file(tmp_path, "dir")
    with pytest.raises(StagingError, match="no such file"):
        regular_file(tmp_path, "missing")


def test_an_output_in_a_real_subdirectory_is_accepted(tmp_path: Path) -> None:
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "r.txt").write_text("x")
    assert regular_file(tmp_path, "out/r.txt") == tmp_path.resolve() / "out" / "r.txt"


def test_output_patterns_match_relative_names_and_plain_names_stand_for_themselves(
    tmp_path: Path,
) -> None:
    for name in ("a.txt", "b.txt", "c.log", "sub/d.txt"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(name)
    assert output_matches(tmp_path, "*.txt") == ["a.txt", "b.txt"]
    assert output_matches(tmp_path, "**/*.txt") == ["a.txt", "b.txt", "sub/d.txt"]
    assert output_matches(tmp_path, "nothing-*.bin") == []
    assert output_matches(tmp_path, "missing.dat") == ["missing.dat"]


def test_a_symlinked_directory_found_by_a_pattern_is_still_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("s")
    work = tmp_path / "work"
    work.mkdir()
    os.symlink(outside, work / "link")
    names = output_matches(work, "**/*.txt")
    assert "link/secret.txt" in names
    with pytest.raises(StagingError, match="symbolic link"):
        regular_file(work, "link/secret.txt")
