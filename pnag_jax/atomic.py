"""Atomic file writes: a reader sees the old file or the whole new one, never half.

The library's reports, configs, priors, figures and result files go through `replacing`: the
bytes go to a temporary sibling (same directory, so `os.replace` is a rename on one
filesystem), which replaces the target only once it is complete. A write that fails
or is interrupted by an exception removes the sibling, so it leaves the old file
(or none) and no debris; a kill -9 can leave only a `*.tmp<pid>-<token>*` sibling
(git ignores them), never a truncated target. There is no fsync: a power cut may
still lose the last write (the checkpoint manifest, which must survive one, syncs).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
from pathlib import Path
from typing import IO, Any, Iterator

from pnag_jax.errors import PnagError


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
  """Yields the temporary path to write; on a clean exit it replaces `path`.

  The temporary name keeps `path`'s suffix, since `Figure.savefig` chooses its format
  from it (`np.savez` would append ".npz" to a name without it: give it the open
  file instead). The pid and a random token keep concurrent writers of one target
  apart: processes on hosts that share a filesystem can have the same pid.
  """
  path = Path(path)
  tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}-{secrets.token_hex(4)}{path.suffix}")
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    # Not a second error on top of the first (a read-only directory refuses both).
    with contextlib.suppress(OSError):
      tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def open_replacing(path: str | Path, mode: str = "w", *, parents: bool = False,
                   **open_kwargs) -> Iterator[IO]:
  """`replacing(path)`'s temporary, opened: the file a user's output is written to.
  `parents` first makes the missing directories above it.

  Raises:
    PnagError: one line, where the file system refuses (permissions, space).
  """
  try:
    if parents:
      Path(path).parent.mkdir(parents=True, exist_ok=True)
    with replacing(path) as tmp, tmp.open(mode, **open_kwargs) as f:
      yield f
  except OSError as e:
    raise PnagError(f"cannot write {path}: {e.strerror or e}") from e


def lock_or_busy(fd: int) -> bool:
  """Locks open file or folder `fd` for this process (flock, exclusive); False where
  another holds it. The lock goes with the process, so a killed one holds none. A file
  system without flock there (NFS emulates it with POSIX locks, which need a file open
  for writing) leaves `fd` unlocked, as before locks existed: True."""
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    return False
  except OSError:
    pass
  return True


def missing_dirs(path: str | Path) -> list[Path]:
  """`path` and the folders above it that do not exist yet, deepest first."""
  path = Path(path)
  return [d for d in (path, *path.parents) if not d.exists()]


def remove_empty(dirs: list[Path]) -> None:
  """Removes the folders of `dirs` (deepest first) that are empty: those a failed
  command created and left; one a run or a user wrote into stays."""
  for d in dirs:
    with contextlib.suppress(OSError):
      os.rmdir(d)


@contextlib.contextmanager
def no_empty_dirs_on_failure(path: str | Path | None) -> Iterator[None]:
  """On an exception, takes back the folders of `path` that it created and left empty:
  a refused command leaves no empty output folder behind."""
  created = [] if path is None else missing_dirs(path)
  try:
    yield
  except BaseException:
    remove_empty(created)
    raise


def write_text(path: str | Path, text: str) -> Path:
  with open_replacing(path) as f:
    f.write(text)
  return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
  """`obj` as indented JSON with a final newline."""
  return write_text(path, json.dumps(obj, indent=2) + "\n")
