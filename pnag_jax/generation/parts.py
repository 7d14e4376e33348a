"""One generated file in parts: part names, sidecars, the manifest, and the merge.

A P-process run of `pnag generate --out F` writes, per process I,

  F.part-0000I-of-0000P        rows start_I .. stop_I - 1 (`block`), atomically
  F.part-0000I-of-0000P.json   its sidecar: run, seed, range, count, bytes, sha256

and, once every part is written, process 0 writes `F.manifest.json` listing them. Only
part 0 carries the CSV header, so the parts concatenated in order are byte for byte the
file one process writes. `merge(F)` checks every part against its sidecar and the
manifest and writes F.

A part is current when its sidecar names the same run and range and the file hashes
to the sidecar's sha256 (`is_current`); a rerun regenerates only the parts that are
not. The run is named by `run_id`, a digest of everything the rows depend on, so a
part left by another seed, model or setting is never taken for this run's.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pnag_jax import atomic
from pnag_jax.errors import PnagError

MANIFEST_FORMAT = "pnag-manifest/1"
SIDECAR_FORMAT = "pnag-part/1"
# What a part's sidecar must share with the run (and the manifest) to be this run's.
_IDENTITY = ("run", "seed", "num", "part", "parts", "start", "stop", "count")


def block(num: int, parts: int, part: int) -> tuple[int, int]:
  """Part `part`'s contiguous share `[start, stop)` of `0 .. num - 1`; sizes differ by <= 1."""
  if not 0 <= part < parts:
    raise PnagError(f"process id {part} is not in 0 .. {parts - 1}")
  return part * num // parts, (part + 1) * num // parts


def part_path(out: str | Path, part: int, parts: int) -> Path:
  out = Path(out)
  return out.with_name(f"{out.name}.part-{part:05d}-of-{parts:05d}")


def sidecar_path(part_file: str | Path) -> Path:
  part_file = Path(part_file)
  return part_file.with_name(part_file.name + ".json")


def manifest_path(out: str | Path) -> Path:
  out = Path(out)
  return out.with_name(out.name + ".manifest.json")


def run_id(**identity: Any) -> str:
  """A digest of what the rows depend on (JSON-able values; bytes for arrays)."""
  h = hashlib.sha256()
  for name in sorted(identity):
    value = identity[name]
    h.update(name.encode() + b"\0")
    h.update(value if isinstance(value, bytes) else json.dumps(value, sort_keys=True).encode())
    h.update(b"\0")
  return h.hexdigest()[:32]


def file_sha256(path: str | Path) -> str:
  h = hashlib.sha256()
  with Path(path).open("rb") as f:
    while block_ := f.read(1 << 22):
      h.update(block_)
  return h.hexdigest()


def read_json(path: Path, what: str, fmt: str | None = None) -> dict:
  """`path`'s JSON; with `fmt`, it must say it is that format. One-line errors."""
  try:
    obj = json.loads(path.read_text())
  except FileNotFoundError:
    raise PnagError(f"{what} {path} is missing") from None
  except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
    raise PnagError(f"{what} {path} is unreadable: {e}") from None
  if fmt is not None and (not isinstance(obj, dict) or obj.get("format") != fmt):
    raise PnagError(f"{path} is not a pnag {what} ({fmt})")
  return obj


def is_current(part_file: Path, expected: dict) -> bool:
  """Whether `part_file` and its sidecar hold this run's part (`expected`'s identity)."""
  side = sidecar_path(part_file)
  if not part_file.is_file() or not side.is_file():
    return False
  try:
    sidecar = json.loads(side.read_text())
  except (OSError, UnicodeDecodeError, json.JSONDecodeError):
    return False
  if any(sidecar.get(k) != expected[k] for k in _IDENTITY):
    return False
  return file_sha256(part_file) == sidecar.get("sha256")


#: What every process of one run must agree on (`check_one_run`).
RUN_KEYS = ("run", "seed", "num", "parts")


def check_one_run(entries: list[dict], did: str, consequence: str,
                  keys: tuple[str, ...] = RUN_KEYS) -> None:
  """Raises unless every entry (a process's `keys` and its `part`) is process 0's run.

  Raises:
    PnagError: naming the first process that failed (an entry with its `error`), else
      the first that differs, and in what.
  """
  entries = sorted(entries, key=lambda e: e["part"])
  for e in entries:
    if "error" in e:
      raise PnagError(f"process {e['part']} failed: {e['error']}; {consequence}")
  first = entries[0]
  for e in entries:
    differ = [f"{k} {e[k]} (process 0: {first[k]})" for k in keys if e[k] != first[k]]
    if differ:
      raise PnagError(f"process {e['part']} {did} another run than process 0: "
                      f"{', '.join(differ)}; {consequence}; rerun every process with the "
                      "same command, workdir and data dir")


def manifest(out: str | Path, sidecars: list[dict], **summary: Any) -> dict:
  """The manifest of `out` from every part's sidecar, in part order.

  Raises:
    PnagError: the parts are not one run's (a process had another seed, --num, model,
      setting or data dir): the manifest would only fail at the merge, naming no cause.
  """
  sidecars = sorted(sidecars, key=lambda s: s["part"])
  check_one_run(sidecars, "generated", "no manifest written")
  first = sidecars[0]
  entries = [{"file": part_path(out, s["part"], s["parts"]).name,
              **{k: s[k] for k in ("start", "stop", "count", "bytes", "sha256")}}
             for s in sidecars]
  return {"format": MANIFEST_FORMAT, "out": Path(out).name,
          **{k: first[k] for k in ("run", "seed", "num", "parts")},
          "rows": sum(s["count"] for s in sidecars), **summary, "part_files": entries}


def _check_sidecar(out: Path, man: dict, entry: dict, i: int) -> Path:
  part_file = out.with_name(entry["file"])
  side = sidecar_path(part_file)
  if not part_file.is_file():
    raise PnagError(f"part {part_file} is missing: rerun the generate command "
                    "(it regenerates only the missing parts)")
  sidecar = read_json(side, "sidecar", SIDECAR_FORMAT)
  if (sidecar.get("seed"), sidecar.get("run")) != (man["seed"], man["run"]):
    raise PnagError(f"part {part_file.name} is from another run (seed {sidecar.get('seed')}, "
                    f"run {sidecar.get('run')}; the manifest has seed {man['seed']}, "
                    f"run {man['run']})")
  expect = {"part": i, "parts": man["parts"], **{k: entry[k] for k in ("start", "stop")}}
  for k, v in expect.items():
    if sidecar.get(k) != v:
      raise PnagError(f"part {part_file.name}: its sidecar has {k} {sidecar.get(k)}, "
                      f"the manifest {v}")
  if sidecar.get("sha256") != entry["sha256"]:
    raise PnagError(f"part {part_file.name}: its sidecar's sha256 differs from the "
                    "manifest's (written by another run)")
  return part_file


def _manifest_entries(man: dict, man_file: Path) -> list[dict]:
  """The manifest's part entries, once its fields have the types a merge reads."""
  entries = man.get("part_files")
  fields = {"num": int, "parts": int, "rows": int, "seed": int, "run": str}
  ok = isinstance(entries, list) and all(isinstance(man.get(k), t) for k, t in fields.items())
  ok = ok and all(
      isinstance(e, dict) and isinstance(e.get("file"), str)
      and e["file"] not in ("", ".", "..") and e["file"] == Path(e["file"]).name
      and all(isinstance(e.get(k), int) for k in ("start", "stop", "count"))
      and isinstance(e.get("sha256"), str) for e in entries)
  # A run has at least one part, and its row count is its parts' (else an empty merge
  # would pass for a whole one).
  ok = ok and man["parts"] >= 1 and man["rows"] == sum(e["count"] for e in entries)
  if not ok:
    raise PnagError(f"{man_file} is malformed (a field is missing or of the wrong type); "
                    "rerun the generate command to write it again")
  return entries


def merge(out: str | Path) -> dict:
  """Checks every part of `out` against the manifest and writes `out`; returns the manifest.

  Each part is hashed as it is copied (one read), and `out` appears only if every
  part matches: whole or not at all.
  """
  out = Path(out)
  if out.name in ("", ".."):
    raise PnagError(f"--merge needs the file name the run wrote (its --out), got {str(out)!r}")
  man_file = manifest_path(out)
  if not man_file.is_file():
    raise PnagError(f"no manifest {man_file}: the multi-process run did not finish "
                    "(rerun it; it keeps the parts already written)")
  if out.is_dir():
    raise PnagError(f"output {out} is a directory; give a file name")
  man = read_json(man_file, "manifest", MANIFEST_FORMAT)
  entries = _manifest_entries(man, man_file)
  if [(e["start"], e["stop"]) for e in entries] != [
      block(man["num"], man["parts"], i) for i in range(man["parts"])]:
    raise PnagError(f"{man_file} does not list parts 0 .. {man['parts'] - 1} in order")
  files = [_check_sidecar(out, man, e, i) for i, e in enumerate(entries)]
  with atomic.open_replacing(out, "wb") as dst:
    for f, entry in zip(files, entries):
      h = hashlib.sha256()
      with f.open("rb") as src:
        while data := src.read(1 << 22):
          dst.write(data)
          h.update(data)
      if h.hexdigest() != entry["sha256"]:
        raise PnagError(f"part {f.name} does not match its sha256 (changed or truncated "
                        "since it was written): rerun the generate command")
  return man
