"""Per-job workspaces: the only place a job may write files.

Paths come from models and people; each is checked before anything is written:
no absolute paths, no `..`, and nothing that resolves (through symlinks)
outside the job's folder. A batch is checked whole before the first write, so
a bad path leaves nothing half-written.
"""

import hashlib
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from django.conf import settings

from jobs.runtime.errors import NonRetryableError

MAX_FILE_BYTES = 5 * 1024 * 1024


class UnsafePath(NonRetryableError):
    """A path that would land outside the job's workspace."""


def job_workspace(job_id: str) -> Path:
    return Path(settings.COUNTERSIGN_WORKSPACE_ROOT) / str(job_id)


NAME_MAX = 255  # bytes in one file name (Linux, macOS)
PATH_MAX = 1024  # bytes in a path inside a workspace, well within the system's 4096


def safe_path(workspace: Path, relative: str) -> Path:
    """Resolve `relative` inside `workspace`, or raise UnsafePath saying why."""
    if not isinstance(relative, str) or not relative.strip():
        raise UnsafePath("a file path must be a non-empty string")
    if "\x00" in relative:
        raise UnsafePath(f"path {relative!r} contains a NUL byte")
    pure = PurePosixPath(relative.replace("\\", "/"))
    if not pure.parts or pure.parts == (".",):
        raise UnsafePath(f"path {relative!r} resolves outside the workspace (it names no file)")
    if pure.is_absolute() or relative.startswith(("/", "\\")) or ":" in pure.parts[0]:
        raise UnsafePath(f"path {relative!r} is absolute; paths must be relative to the workspace")
    if ".." in pure.parts:
        raise UnsafePath(f"path {relative!r} contains '..'")
    # What the write would fail on later (ENAMETOOLONG, an unencodable name): refused
    # now, when a person approves the file, not when the job writes it.
    try:
        encoded = [part.encode() for part in pure.parts]
    except UnicodeEncodeError:
        raise UnsafePath(f"path {relative!r} is not valid UTF-8") from None
    if any(len(part) > NAME_MAX for part in encoded):
        raise UnsafePath(f"a name in path {relative[:80]!r}… is longer than {NAME_MAX} bytes")
    if sum(len(part) + 1 for part in encoded) > PATH_MAX:
        raise UnsafePath(f"path {relative[:80]!r}… is longer than {PATH_MAX} bytes")
    root = workspace.resolve()
    target = (root / Path(*pure.parts)).resolve()
    if target == root or root not in target.parents:
        raise UnsafePath(f"path {relative!r} resolves outside the workspace")
    return target


@dataclass(frozen=True)
class FileSpec:
    path: str
    content: str | bytes  # text is written as UTF-8

    @property
    def data(self) -> bytes:
        return self.content.encode() if isinstance(self.content, str) else self.content


def check_files(workspace: Path, files: Iterable[FileSpec]) -> list[tuple[FileSpec, Path]]:
    checked = []
    seen: set[Path] = set()
    for spec in files:
        target = safe_path(workspace, spec.path)
        if target in seen:
            raise UnsafePath(f"path {spec.path!r} appears twice")
        if len(spec.data) > MAX_FILE_BYTES:
            raise UnsafePath(f"file {spec.path!r} is larger than {MAX_FILE_BYTES} bytes")
        if target.is_dir():
            raise UnsafePath(f"path {spec.path!r} is a directory")
        seen.add(target)
        checked.append((spec, target))
    root = workspace.resolve()
    for spec, target in checked:
        for parent in target.parents:
            if parent == root or root not in parent.parents:
                break
            if parent in seen:
                raise UnsafePath(f"path {spec.path!r} is inside another file of this batch")
            if parent.exists() and not parent.is_dir():
                raise UnsafePath(f"path {spec.path!r} is inside an existing file")
    return checked


def write_files(workspace: Path, files: Iterable[FileSpec]) -> list[dict[str, object]]:
    """Write every file atomically (temp file + rename) after checking them all."""
    workspace.mkdir(parents=True, exist_ok=True)
    checked = check_files(workspace, files)
    written = []
    for spec, target in checked:
        target.parent.mkdir(parents=True, exist_ok=True)
        # Re-check after creating folders: a symlinked folder must not redirect the write.
        target = safe_path(workspace, spec.path)
        data = spec.data
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".countersign-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.replace(tmp, target)  # replaces a symlink itself, never its target
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(
            {"path": spec.path, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        )
    return written
