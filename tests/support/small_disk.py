"""Small file systems a test makes for the edge's buffer: a tmpfs of a few megabytes (a
disk that fills up), a read-only one, and an ext4 image on a loop device whose image file
holds only what the kernel wrote down to the "disk" (a power cut keeps that, not the page
cache). Each needs root (CI runs as root in a container); where mounting is refused the
test is skipped with the reason, never passed."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def _mount_or_skip(*cmd: str) -> None:
    proc = _run(*cmd)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount here ({' '.join(cmd[:3])}): {proc.stderr.strip()}")


def _umount(folder: Path) -> None:
    # A process killed a moment ago may still hold a file: lazily, so the test ends.
    if _run("umount", str(folder)).returncode != 0:
        _run("umount", "-l", str(folder))


@contextmanager
def tmpfs(folder: Path, size_bytes: int, readonly: bool = False) -> Iterator[Path]:
    """A tmpfs of `size_bytes` mounted on `folder` (read-only with `readonly`)."""
    folder.mkdir(parents=True, exist_ok=True)
    options = f"size={size_bytes}" + (",ro" if readonly else "")
    _mount_or_skip("mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder))
    try:
        yield folder
    finally:
        _umount(folder)


def fill(folder: Path, leave_bytes: int) -> Path:
    """A file that takes all the room on folder's file system but `leave_bytes`."""
    free = shutil.disk_usage(folder).free
    ballast = folder / "ballast"
    with open(ballast, "wb") as f:
        f.write(bytes(max(0, free - leave_bytes)))
    return ballast


@contextmanager
def ext4_image(image: Path, folder: Path, size_mb: int = 64, fresh: bool = True) -> Iterator[Path]:
    """An ext4 file system in the file `image` (made anew unless `fresh` is False: a copy
    to mount as it is, its journal replayed), mounted on `folder` through a loop device.
    The image file holds what ext4 has written to its block device: data a process
    fsynced, and whatever writeback has flushed, but not dirty page cache."""
    if fresh:
        if shutil.which("mkfs.ext4") is None:
            pytest.skip("mkfs.ext4 is not installed (Debian package e2fsprogs)")
        with open(image, "wb") as f:
            f.truncate(size_mb * 1024 * 1024)
        proc = _run("mkfs.ext4", "-q", "-F", str(image))
        assert proc.returncode == 0, proc.stderr
    folder.mkdir(parents=True, exist_ok=True)
    _mount_or_skip("mount", "-o", "loop", str(image), str(folder))
    try:
        yield folder
    finally:
        _umount(folder)


def snapshot(image: Path, copy: Path) -> None:
    """Copy the image file as it is on the "disk" now, read past the page cache of the
    file system mounted from it (that one is the mounted ext4's, not the image file's)."""
    shutil.copyfile(image, copy)
