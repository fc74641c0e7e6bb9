"""Files that hold secrets (Airflow's JWT secret, its generated passwords, logs that print them),
private to the user from their first byte: created with mode 0600 by ``os.open`` rather than
written and then ``chmod``-ed, and kept in a state directory of mode 0700. The platform's child
processes run with ``UMASK``, so whatever they create themselves is private too."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO, Final

FILE_MODE: Final = 0o600
DIR_MODE: Final = 0o700
UMASK: Final = 0o077


def private_dir(path: Path) -> Path:
    """``path`` as a directory only its owner can enter (an existing one is tightened)."""
    path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    path.chmod(DIR_MODE)
    return path


def create_private(path: Path, content: bytes = b"") -> bool:
    """Create ``path`` with mode 0600 holding ``content``; False, and only the mode tightened
    (an older install's file), when it exists already."""
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    except FileExistsError:
        path.chmod(FILE_MODE)
        return False
    with os.fdopen(fd, "wb") as file:
        file.write(content)
    return True


def open_private_log(path: Path) -> BinaryIO:
    """``path`` for appending, created with mode 0600."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, FILE_MODE)
    os.fchmod(fd, FILE_MODE)  # a log from before this rule
    return os.fdopen(fd, "ab")
