"""Atomic file writes: a reader sees the old file or the whole new one, never half.

Every report, prior and figure the project writes goes through `replacing`: the
bytes go to a temporary sibling (same directory, so `os.replace` is a rename on one
filesystem), which replaces the target only once it is complete. A write that fails
or is interrupted by an exception removes the sibling, so it leaves the old file
(or none) and no debris; a kill -9 can leave only a `*.tmp<pid>*` sibling, never a
truncated target.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator


@contextlib.contextmanager
def replacing(path: str | Path) -> Iterator[Path]:
  """Yields the temporary path to write; on a clean exit it replaces `path`.

  The temporary name keeps `path`'s suffix, since writers such as `np.savez` and
  `Figure.savefig` choose or append a format from it; the pid in it keeps two
  processes writing the same target from sharing one.
  """
  path = Path(path)
  tmp = path.with_name(f"{path.stem}.tmp{os.getpid()}{path.suffix}")
  try:
    yield tmp
    os.replace(tmp, path)
  finally:
    tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
  with replacing(path) as tmp:
    tmp.write_text(text)
  return Path(path)


def write_json(path: str | Path, obj: Any) -> Path:
  """`obj` as indented JSON with a final newline."""
  return write_text(path, json.dumps(obj, indent=2) + "\n")
