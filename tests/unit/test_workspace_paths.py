"""Path safety for workspace writes: nothing lands outside the job's folder."""

import os
from pathlib import Path

import pytest

from jobs.runtime import FileSpec, UnsafePath, safe_path, write_files


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/etc/passwd", "absolute"),
        ("\\windows\\system32", "absolute"),
        ("C:/x.py", "absolute"),
        ("../outside.py", "'..'"),
        ("a/../../outside.py", "'..'"),
        ("a\\..\\..\\outside.py", "'..'"),
        ("", "non-empty"),
        ("   ", "non-empty"),
        ("bad\x00name", "NUL"),
        (".", "outside"),
        ("a" * 256 + ".py", "longer than 255 bytes"),
        ("é" * 128, "longer than 255 bytes"),  # 256 bytes in UTF-8
        ("/".join(["d" * 200] * 6), "longer than 1024 bytes"),
        ("bad\udc80name", "UTF-8"),
    ],
)
def test_unsafe_paths_are_refused_with_a_reason(workspace: Path, path: str, why: str):
    with pytest.raises(UnsafePath, match=why):
        safe_path(workspace, path)


def test_a_symlinked_folder_pointing_outside_is_refused(workspace: Path, tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (workspace / "link").symlink_to(outside)

    with pytest.raises(UnsafePath, match="outside the workspace"):
        write_files(workspace, [FileSpec("link/evil.py", "x")])
    assert list(outside.iterdir()) == []


def test_a_symlinked_file_pointing_outside_is_refused(workspace: Path, tmp_path: Path):
    target = tmp_path / "victim.txt"
    target.write_text("original")
    (workspace / "innocent.txt").symlink_to(target)

    with pytest.raises(UnsafePath, match="outside the workspace"):
        write_files(workspace, [FileSpec("innocent.txt", "overwritten")])
    assert target.read_text() == "original"


def test_one_bad_path_means_nothing_is_written(workspace: Path):
    with pytest.raises(UnsafePath):
        write_files(workspace, [FileSpec("good.py", "1"), FileSpec("../bad.py", "2")])
    assert list(workspace.iterdir()) == []


def test_duplicate_paths_are_refused(workspace: Path):
    with pytest.raises(UnsafePath, match="twice"):
        write_files(workspace, [FileSpec("a.py", "1"), FileSpec("./a.py", "2")])


def test_symlinks_inside_the_workspace_are_allowed(workspace: Path):
    (workspace / "real").mkdir()
    (workspace / "alias").symlink_to(workspace / "real")

    written = write_files(workspace, [FileSpec("alias/ok.py", "ok\n")])

    assert (workspace / "real" / "ok.py").read_text() == "ok\n"
    assert written[0]["bytes"] == 3


def test_writes_are_atomic_and_leave_no_temp_files(workspace: Path):
    write_files(workspace, [FileSpec("pkg/mod.py", "v1\n")])
    write_files(workspace, [FileSpec("pkg/mod.py", "v2\n")])

    assert (workspace / "pkg" / "mod.py").read_text() == "v2\n"
    assert os.listdir(workspace / "pkg") == ["mod.py"]


@pytest.mark.parametrize("paths", [["a", "a/b"], ["a/b", "a"], ["x/y", "x/y/z"]])
def test_one_batch_cannot_use_a_path_as_file_and_folder(workspace: Path, paths: list[str]):
    with pytest.raises(UnsafePath, match="inside another file"):
        write_files(workspace, [FileSpec(p, "1") for p in paths])
    assert list(workspace.iterdir()) == []


def test_a_path_inside_an_existing_file_is_refused(workspace: Path):
    (workspace / "a").write_text("file")
    with pytest.raises(UnsafePath, match="inside an existing file"):
        write_files(workspace, [FileSpec("ok.py", "1"), FileSpec("a/b", "2")])
    assert sorted(p.name for p in workspace.iterdir()) == ["a"]
