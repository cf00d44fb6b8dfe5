"""Confinement of staged names to the work directory: '..', absolute names, symlinks."""

from __future__ import annotations

import glob
import os
import threading
import time
from pathlib import Path

import pytest

from gates.base import StagingError
from gates.confine import Matches, confined, output_matches, regular_file
from schemas.jobs import MAX_STAGED_FILES


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
    assert output_matches(tmp_path, "*.txt").names == ["a.txt", "b.txt"]
    assert output_matches(tmp_path, "**/*.txt").names == ["a.txt", "b.txt", "sub/d.txt"]
    assert output_matches(tmp_path, "nothing-*.bin") == Matches([])
    assert output_matches(tmp_path, "missing.dat") == Matches(["missing.dat"])


TREE = (
    "a.txt", "b.txt", "c.log", ".hidden.txt", "sub/d.txt", "sub/e.dat", "sub/deep/f.txt",
    "sub/.h/g.txt", ".git/config", "sab/x.txt", "sub/deep/er/h.txt", "[x].txt",
)  # fmt: skip
PATTERNS = (
    "*.txt", "**/*.txt", "**", "sub/**", "s?b/*", "[ab].txt", "[!a]*.txt", ".*", "**/.h*",
    "*/*", "**/deep/**/*.txt", "sub/**/*.txt", "**/**/f.txt", ".git/*", "*/.h/*", "*[*",
    "sub/*/f.*", "**/e.dat",
)  # fmt: skip


@pytest.mark.parametrize("pattern", PATTERNS)
def test_patterns_mean_what_glob_means_for_files_in_real_directories(
    tmp_path: Path, pattern: str
) -> None:
    for name in TREE:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    expected = sorted(
        {  # a set: glob gives some names twice for "**/**"
            name
            for name in glob.glob(pattern, root_dir=tmp_path, recursive=True)
            if not (tmp_path / name).is_dir()
        }
    )
    assert output_matches(tmp_path, pattern) == Matches(expected)


def test_a_pattern_does_not_enter_a_symlinked_directory(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("s")
    work = tmp_path / "work"
    work.mkdir()
    os.symlink(outside, work / "link")
    (work / "leak.txt").symlink_to(outside / "secret.txt")
    assert output_matches(work, "**/*.txt").names == ["leak.txt"]
    with pytest.raises(StagingError, match="symbolic link"):
        regular_file(work, "leak.txt")
    with pytest.raises(StagingError, match="symbolic link"):
        regular_file(work, "link/secret.txt")


def test_a_symlink_loop_does_not_make_a_pattern_search_endless(tmp_path: Path) -> None:
    # what `ln -s . a; ln -s . b; echo r > result.txt` leaves: glob followed a/b/a/b/...
    (tmp_path / "a").symlink_to(".")
    (tmp_path / "b").symlink_to(".")
    (tmp_path / "result.txt").write_text("r\n")
    result: list[Matches] = []
    worker = threading.Thread(
        target=lambda: result.append(output_matches(tmp_path, "**/*.txt")), daemon=True
    )  # a daemon: a search that never ends cannot keep the test process alive
    worker.start()
    worker.join(timeout=5)
    assert result == [Matches(["result.txt"])]


def test_a_search_stops_at_the_file_limit_and_says_so(tmp_path: Path) -> None:
    for i in range(12):
        (tmp_path / f"f{i:02}.txt").write_text("x")
    found = output_matches(tmp_path, "*.txt", limit=10)
    assert found.names == [f"f{i:02}.txt" for i in range(10)]
    assert found.truncated == "search stopped at 10 match(es)"
    assert len(output_matches(tmp_path, "*.txt").names) == 12 < MAX_STAGED_FILES


def test_a_search_stops_at_its_deadline_and_says_so(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "r.txt").write_text("x")
    found = output_matches(tmp_path, "**/*.txt", deadline=time.monotonic() - 1)
    assert found.names == []
    assert found.truncated is not None and "too slow" in found.truncated
