"""The end of every training run: the final metrics row and `report.json`.

A run's `train_seconds` is the total over every invocation that trained it: each
checkpoint's metadata carries the total up to its step (`lineage.stage_meta`), and a
resumed run starts from its checkpoint's (`seconds_before`). A rerun with nothing
left to train returns the report already written (`finished`) instead of a new one.
A trainer asks both of `resumed`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Mapping

from pnag_jax import atomic
from pnag_jax.errors import PnagError

REPORT = "report.json"
METRICS = "metrics.jsonl"
#: Where `open_metrics` moves rows of steps trained again.
DROPPED_METRICS = "metrics.dropped.jsonl"
#: The report's own record of its config: `config.json` is rewritten when a run starts,
#: before its report is, so a kill in between leaves the two of different configs.
CONFIG_HASH = "config_sha256"


def _sha256(text: str) -> str:
  return hashlib.sha256(text.encode()).hexdigest()


def write_final(out_dir: Path, step: int, report: dict) -> None:
  """Appends the `final` row to `metrics.jsonl` and writes `report.json` (`write_report`)."""
  with open_metrics(out_dir, step, final=True) as log:
    log.write(json.dumps({"step": step, "split": "final", **report}) + "\n")
  write_report(out_dir, report)


def open_metrics(out_dir: Path, start: int, *, final: bool = False) -> "_Log":
  """`metrics.jsonl`, opened to append a row per line, for an invocation that trains on
  from checkpoint step `start` (0: a new run).

  Rows of steps past `start` move first to `metrics.dropped.jsonl` beside it: an
  invocation killed after its last checkpoint (or, at 0, before its first, or a run
  whose checkpoints were deleted) logged them, and those steps are trained, and
  logged, again, with a new run's config as another run's. So each step keeps one row
  per split, its run's own, and no row is lost. `final`: the invocation writes the
  run's final row at `start`, and an earlier one there moves too (a rerun that measures
  anew, or one killed between that row and `report.json`). A line that is no row (cut
  short by a crash, or bytes that are no text) stays as it is, ended, so the next row
  starts a line of its own; readers skip it (`read_metrics`). Lines end at newlines
  only, and are moved as bytes: whatever they hold is kept.
  """
  path = out_dir / METRICS
  data = _read_bytes(path)
  lines = data.split(b"\n")
  if lines[-1] == b"":  # what follows the last newline: nothing, or a cut line
    lines.pop()
  kept, past = [], []
  for line in lines:
    row = _row(line)
    step = row.get("step") if isinstance(row, dict) else None
    moved = isinstance(step, int) and (
        step > start or (final and step == start and row.get("split") == "final"))
    (past if moved else kept).append(line + b"\n")
  if past:
    # Appended before the rewrite: a kill in between leaves rows twice, never none.
    dropped = out_dir / DROPPED_METRICS
    try:
      cut = _ends_mid_line(dropped)
      with dropped.open("ab") as f:
        f.writelines([b"\n"] * cut + past)
    except OSError as e:  # a folder where the file should be, permissions, space
      raise PnagError(f"cannot write {dropped}: {e.strerror or e}") from None
  if past or (data and not data.endswith(b"\n")):
    with atomic.open_replacing(path, "wb") as f:
      f.writelines(kept)
  return _Log(path)


class _Log:
  """`metrics.jsonl` open to append: a write the storage refuses (a full disk, a file
  size limit) is a one-line error naming the file; training resumes from its last
  checkpoint."""

  def __init__(self, path: Path):
    self.path = path
    self._file = self._do(lambda: path.open("a"))

  def _do(self, fn):
    try:
      return fn()
    except OSError as e:
      raise PnagError(f"cannot write {self.path}: {e.strerror or e}") from e

  def write(self, text: str) -> None:
    self._do(lambda: self._file.write(text))

  def flush(self) -> None:
    self._do(self._file.flush)

  def close(self) -> None:
    self._do(self._file.close)

  def __enter__(self) -> "_Log":
    return self

  def __exit__(self, exc_type, exc, tb) -> None:
    if exc_type is None:
      self.close()
    else:
      with contextlib.suppress(OSError):
        self._file.close()


def _read_bytes(path: Path) -> bytes:
  try:
    return path.read_bytes()
  except FileNotFoundError:
    return b""
  except OSError as e:  # a folder where the log should be, permissions
    raise PnagError(f"cannot read {path}: {e.strerror or e}") from None


def _row(line: bytes) -> Any:
  """The line's JSON value, or None where it is none (a cut line, bytes of no text)."""
  try:
    return json.loads(line)
  except ValueError:  # UnicodeDecodeError included
    return None


def _ends_mid_line(path: Path) -> bool:
  try:
    with path.open("rb") as f:
      if f.seek(0, os.SEEK_END) == 0:
        return False
      f.seek(-1, os.SEEK_END)
      return f.read(1) != b"\n"
  except FileNotFoundError:
    return False


def read_metrics(out_dir: Path) -> list[dict]:
  """The rows of `metrics.jsonl` in file order, without the lines that are none (cut
  short by a crash, or no text); none where there is no file (a run that logged no
  step, or one of before the log)."""
  rows = (_row(line) for line in _read_bytes(out_dir / METRICS).split(b"\n"))
  return [row for row in rows if isinstance(row, dict)]


def write_report(out_dir: Path, report: dict) -> None:
  """Writes `report.json` atomically (a reader never sees half a report; a killed run
  keeps the old one), marked with the hash of the `config.json` it was measured under."""
  config = out_dir / "config.json"
  if config.is_file():
    report = {**report, CONFIG_HASH: _sha256(config.read_text())}
  atomic.write_json(out_dir / REPORT, report)


def _read_report(out_dir: Path) -> dict | None:
  """`report.json`, or None where it is missing or unreadable (then it is rewritten)."""
  try:
    report = json.loads((out_dir / REPORT).read_text())
  except (OSError, ValueError):
    return None
  return report if isinstance(report, dict) else None


def final_step(out_dir: Path) -> int | None:
  """The step of the run's final report (its last step, once finished), or None."""
  report = _read_report(out_dir)
  steps = None if report is None else report.get("steps")
  return steps if isinstance(steps, int) else None


def resumed(meta: Mapping[str, Any], out_dir: Path, step: int, total: int,
            config_json: str, *, steps_key: str = "steps") -> tuple[dict | None, float]:
  """What a run resuming from checkpoint `step` (of `total`) carries over:
  (`finished`'s report, to return as it is, or None; `seconds_before`).

  `steps_key`: the report's count of checkpoint steps (`pnag train-arch` checkpoints
  per epoch, and its report says `epochs`).
  """
  report = _read_report(out_dir)
  done = (_finished(report, out_dir, total, config_json, steps_key)
          if step == total else None)
  return done, _seconds_before(meta, report, step, steps_key)


def seconds_before(meta: Mapping[str, Any], out_dir: Path, step: int) -> float:
  """The training seconds of every invocation before this one, up to checkpoint `step`.

  The time of steps past the last checkpoint of a killed invocation is not counted:
  they are trained again, and that time is. Checkpoints saved before the total was
  recorded have none: for them it is the `train_seconds` of a `report.json` written at
  that same step (which covered only that run's last invocation), else 0.
  """
  return _seconds_before(meta, _read_report(out_dir), step)


def _seconds_before(meta: Mapping[str, Any], report: dict | None, step: int,
                    steps_key: str = "steps") -> float:
  if "train_seconds" in meta:
    return float(meta["train_seconds"])
  if report is not None and report.get(steps_key) == step:
    return float(report.get("train_seconds") or 0.0)
  return 0.0


def finished(out_dir: Path, step: int, config_json: str) -> dict | None:
  """The report of a run already finished at `step` with this config, else None.

  A rerun with nothing left to train returns it unchanged: a new one would repeat the
  final evaluation for the same figures. Call it before the run rewrites
  `config.json`; another config (e.g. another `eval_size`) gets a new report. Where
  it returns the report, `config.json` is made that config again: a run of another
  config killed after rewriting it, or a hand edit, would leave the two disagreeing.
  """
  return _finished(_read_report(out_dir), out_dir, step, config_json)


def _finished(report: dict | None, out_dir: Path, step: int, config_json: str,
              steps_key: str = "steps") -> dict | None:
  if report is None or report.get(steps_key) != step:
    return None
  config = out_dir / "config.json"
  try:
    saved = config.read_text()
  except OSError:
    saved = None
  # The config hash is the file's bookkeeping, not a figure: left out of the report.
  figures = {k: v for k, v in report.items() if k != CONFIG_HASH}
  if CONFIG_HASH not in report:  # a report written before it carried its config's hash
    return figures if saved == config_json else None
  if report[CONFIG_HASH] != _sha256(config_json):
    return None
  if saved != config_json:
    atomic.write_text(config, config_json)
  return figures
