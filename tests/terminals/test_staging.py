"""Fetching outputs: names from the bus are confined under the destination."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from bus.connection import Bus
from bus.deployment import StateDir
from bus.objects import put_file
from schemas.jobs import StagedOutput
from schemas.subjects import files_bucket
from terminals.client.client import Client
from terminals.client.errors import StagingError
from terminals.client.staging import confined_target, prepare_target
from tests.terminals.fakecore import FakeCore, detail


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/etc/passwd", "", ".", "a\\b", "a\x00"])
def test_unsafe_names_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(StagingError):
        confined_target(tmp_path, name)


def test_nested_names_stay_inside(tmp_path: Path) -> None:
    target = prepare_target(tmp_path, "out/deep/result.txt")
    assert target == tmp_path.resolve() / "out/deep/result.txt"
    assert target.parent.is_dir()


def test_symlinked_directory_is_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "link").symlink_to(outside)
    with pytest.raises(StagingError, match="symbolic link"):
        confined_target(dest, "link/file.txt")


def test_symlinked_file_and_part_file_are_refused(tmp_path: Path) -> None:
    (tmp_path / "f").symlink_to("/etc/passwd")
    (tmp_path / "g.skyport-part").symlink_to("/tmp/evil")
    for name in ("f", "g"):
        with pytest.raises(StagingError, match="symbolic link"):
            confined_target(tmp_path, name)


def test_destination_itself_may_be_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "alias").symlink_to(real)
    assert confined_target(tmp_path / "alias", "x") == real / "x"


async def test_fetch_downloads_checked_outputs_and_refuses_escapes(
    state: StateDir, nats_url: str, core_bus: Bus, alice_bus: Bus, tmp_path: Path
) -> None:
    src = tmp_path / "src.txt"
    src.write_text("result\n")
    size, digest = await put_file(alice_bus.js, files_bucket("alice"), "jobs/1/result.txt", src)
    good = StagedOutput(name="sub/result.txt", obj="jobs/1/result.txt", size=size, sha256=digest)
    evil = StagedOutput(name="../escape.txt", obj="jobs/1/result.txt", size=size, sha256=digest)
    wrong = StagedOutput(name="bad.txt", obj="jobs/1/result.txt", size=size, sha256="0" * 64)
    fake = FakeCore(
        [],
        details={
            "1": detail("1", outputs=(good,)),
            "2": detail("2", outputs=(evil,)),
            "3": detail("3", outputs=(wrong,)),
        },
    )
    await fake.serve(core_bus)
    dest = tmp_path / "dest"
    async with await Client.connect(state.root, "alice", nats_url=nats_url) as client:
        written = await client.fetch("1", dest)
        assert written == [dest.resolve() / "sub/result.txt"]
        assert written[0].read_text() == "result\n"
        assert hashlib.sha256(written[0].read_bytes()).hexdigest() == digest
        with pytest.raises(StagingError, match=r"\.\."):
            await client.fetch("2", dest)
        with pytest.raises(StagingError, match="digest"):
            await client.fetch("3", dest)
    assert not (tmp_path / "escape.txt").exists()
    assert not (dest / "bad.txt").exists()
