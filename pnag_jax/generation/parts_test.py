"""Parts, sidecars, the manifest and the merge, on files written as the processes write
them (the runtime itself is exercised by multiprocess_test.py)."""

import json

import pytest
from hypothesis import given, strategies as st

from pnag_jax import atomic
from pnag_jax.errors import PnagError
from pnag_jax.generation import parts

_HEADER = "arch,valid\n"


def _rows(start, stop, seed=0):
  return "".join(f"a{seed}_{i},True\n" for i in range(start, stop))


def _write_run(out, num, count, seed=0, run="r0"):
  """Parts, sidecars and the manifest of a `count`-process run, as `generate` leaves
  them; returns the whole file's text."""
  sidecars = []
  for i in range(count):
    start, stop = parts.block(num, count, i)
    text = (_HEADER if i == 0 else "") + _rows(start, stop, seed)
    f = parts.part_path(out, i, count)
    f.write_text(text)
    side = {"format": parts.SIDECAR_FORMAT, "run": run, "seed": seed, "num": num, "part": i,
            "parts": count, "start": start, "stop": stop, "count": stop - start,
            "bytes": len(text), "sha256": parts.file_sha256(f)}
    atomic.write_json(parts.sidecar_path(f), side)
    sidecars.append(side)
  atomic.write_json(parts.manifest_path(out), parts.manifest(out, sidecars[::-1]))
  return _HEADER + _rows(0, num, seed)


@given(num=st.integers(0, 10_000), count=st.integers(1, 64))
def test_blocks_tile_the_range_in_order_with_sizes_within_one(num, count):
  blocks = [parts.block(num, count, i) for i in range(count)]
  assert blocks[0][0] == 0 and blocks[-1][1] == num
  assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
  sizes = [stop - start for start, stop in blocks]
  assert max(sizes) - min(sizes) <= 1


def test_block_rejects_a_process_outside_the_run():
  with pytest.raises(PnagError, match=r"process id 2 is not in 0 \.\. 1"):
    parts.block(10, 2, 2)


def test_names_follow_the_documented_pattern(tmp_path):
  out = tmp_path / "archs.csv"
  assert parts.part_path(out, 1, 2).name == "archs.csv.part-00001-of-00002"
  assert parts.sidecar_path(parts.part_path(out, 1, 2)).name == (
      "archs.csv.part-00001-of-00002.json")
  assert parts.manifest_path(out).name == "archs.csv.manifest.json"


@pytest.mark.parametrize("count", [1, 2, 3])
def test_merge_concatenates_parts_into_the_whole_file(tmp_path, count):
  out = tmp_path / "archs.csv"
  whole = _write_run(out, 10, count)
  man = parts.merge(out)
  assert out.read_text() == whole
  assert man["rows"] == 10 and [e["file"] for e in man["part_files"]] == [
      parts.part_path(out, i, count).name for i in range(count)]


def test_merge_without_a_manifest_says_the_run_did_not_finish(tmp_path):
  out = tmp_path / "archs.csv"
  _write_run(out, 10, 2)
  parts.manifest_path(out).unlink()
  with pytest.raises(PnagError, match="did not finish"):
    parts.merge(out)
  assert not out.exists()


def test_merge_refuses_a_part_from_another_seed_and_keeps_the_old_file(tmp_path):
  out, other = tmp_path / "archs.csv", tmp_path / "other.csv"
  _write_run(out, 10, 2, seed=0, run="r0")
  _write_run(other, 10, 2, seed=1, run="r1")
  for src, dst in ((parts.part_path(other, 1, 2), parts.part_path(out, 1, 2)),):
    dst.write_bytes(src.read_bytes())
    parts.sidecar_path(dst).write_bytes(parts.sidecar_path(src).read_bytes())
  out.write_text("precious\n")
  with pytest.raises(PnagError, match=r"from another run \(seed 1, run r1; the manifest "
                                      r"has seed 0, run r0\)"):
    parts.merge(out)
  assert out.read_text() == "precious\n"


def test_merge_refuses_a_part_changed_after_it_was_written(tmp_path):
  out = tmp_path / "archs.csv"
  _write_run(out, 10, 2)
  part = parts.part_path(out, 1, 2)
  part.write_text(part.read_text().replace("a0_7", "a0_8"))
  with pytest.raises(PnagError, match="does not match its sha256"):
    parts.merge(out)
  assert not out.exists() and not list(tmp_path.glob("archs.tmp*"))


def test_merge_refuses_a_sidecar_rewritten_by_another_run(tmp_path):
  out = tmp_path / "archs.csv"
  _write_run(out, 10, 2)
  side = parts.sidecar_path(parts.part_path(out, 0, 2))
  side.write_text(json.dumps({**json.loads(side.read_text()), "sha256": "0" * 64}))
  with pytest.raises(PnagError, match="sidecar's sha256 differs from the manifest's"):
    parts.merge(out)


@pytest.mark.parametrize("damage", ["part", "sidecar", "corrupt_sidecar"])
def test_merge_names_a_missing_or_unreadable_part(tmp_path, damage):
  out = tmp_path / "archs.csv"
  _write_run(out, 10, 2)
  part = parts.part_path(out, 1, 2)
  if damage == "part":
    part.unlink()
  elif damage == "sidecar":
    parts.sidecar_path(part).unlink()
  else:
    parts.sidecar_path(part).write_text("{not json")
  match = {"part": "is missing: rerun", "sidecar": "sidecar .* is missing",
           "corrupt_sidecar": "sidecar .* is unreadable"}[damage]
  with pytest.raises(PnagError, match=match):
    parts.merge(out)


def test_a_part_is_current_only_with_its_own_sidecar_and_bytes(tmp_path):
  out = tmp_path / "archs.csv"
  _write_run(out, 10, 2, run="r0")
  part = parts.part_path(out, 1, 2)
  expected = {"run": "r0", "seed": 0, "num": 10, "part": 1, "parts": 2, "start": 5,
              "stop": 10, "count": 5}
  assert parts.is_current(part, expected)
  assert not parts.is_current(part, {**expected, "run": "r1"})
  assert not parts.is_current(part, {**expected, "seed": 1})
  part.write_text(part.read_text()[:-3])  # a truncated part
  assert not parts.is_current(part, expected)
  assert not parts.is_current(parts.part_path(out, 1, 3), expected)


def test_run_id_changes_with_every_input():
  base = dict(arrays=b"\x00\x01", settings={"prior": "codes"}, seed=0, num=10, parts=2)
  ids = {parts.run_id(**base)}
  for k, v in (("arrays", b"\x00\x02"), ("settings", {"prior": "fitted"}), ("seed", 1),
               ("num", 11), ("parts", 3)):
    ids.add(parts.run_id(**{**base, k: v}))
  assert len(ids) == 6
  assert parts.run_id(**base) == parts.run_id(**dict(reversed(base.items())))


def test_process_zero_writes_no_manifest_for_parts_of_different_runs(tmp_path):
  # As when one process ran with another --num or data dir: every part is written, and
  # the manifest must say which process differs, not leave it to the merge.
  out, other = tmp_path / "archs.csv", tmp_path / "other.csv"
  _write_run(out, 10, 2, run="r0")
  _write_run(other, 10, 2, run="r1")
  sidecars = [json.loads(parts.sidecar_path(parts.part_path(f, i, 2)).read_text())
              for f, i in ((out, 0), (other, 1))]
  with pytest.raises(PnagError, match=r"process 1 generated another run than process 0: "
                                      r"run r1 \(process 0: r0\); no manifest written"):
    parts.manifest(out, sidecars)


@pytest.mark.parametrize("damage", [
    lambda m: m.pop("part_files"),
    lambda m: m.update(parts="2"),
    lambda m: m["part_files"][1].update(file="../elsewhere.csv"),
    # Names of no file: these crashed in Path.with_name with a traceback.
    lambda m: m["part_files"][0].update(file=""),
    lambda m: m["part_files"][0].update(file=".."),
    lambda m: m["part_files"][0].pop("sha256"),
    lambda m: m.pop("rows"),
    lambda m: m.update(rows="x"),
    lambda m: m.update(rows=m["rows"] + 1),
    lambda m: m.update(parts=0, part_files=[]),  # it merged an empty file, with exit 0
])
def test_merge_refuses_a_malformed_manifest_in_one_line(tmp_path, damage):
  out = tmp_path / "archs.csv"
  _write_run(out, 10, 2)
  man = json.loads(parts.manifest_path(out).read_text())
  damage(man)
  atomic.write_json(parts.manifest_path(out), man)
  with pytest.raises(PnagError, match="is malformed") as e:
    parts.merge(out)
  assert "\n" not in str(e.value) and not out.exists()


def test_merge_onto_a_directory_is_refused_before_writing(tmp_path):
  out = tmp_path / "archs.csv"
  _write_run(out, 10, 2)
  out.mkdir()
  with pytest.raises(PnagError, match="is a directory"):
    parts.merge(out)
  assert not list(tmp_path.glob("archs.tmp*"))


@pytest.mark.parametrize("name", ["", ".", "/", ".."])
def test_merge_of_no_file_name_is_one_line(name):
  with pytest.raises(PnagError, match="--merge needs the file name the run wrote"):
    parts.merge(name)


def test_merge_the_file_system_refuses_is_one_line_and_keeps_the_parts(tmp_path,
                                                                       monkeypatch):
  out = tmp_path / "archs.csv"
  _write_run(out, 10, 2)
  before = sorted(p.name for p in tmp_path.iterdir())

  def refused(*args, **kwargs):
    raise PermissionError(1, "Operation not permitted")  # as a chattr +i directory

  monkeypatch.setattr(parts.atomic.os, "replace", refused)
  with pytest.raises(PnagError, match=r"cannot write .*archs.csv: Operation not permitted"):
    parts.merge(out)
  assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_processes_of_another_run_are_named_before_anything_is_written():
  runs = [{"run": "r0", "seed": 0, "num": 10, "parts": 2, "part": 1},
          {"run": "r0", "seed": 0, "num": 10, "parts": 2, "part": 0}]
  parts.check_one_run(runs, "is running", "nothing written")
  runs[0]["seed"] = 5
  with pytest.raises(PnagError, match=r"^process 1 is running another run than process 0: "
                                      r"seed 5 \(process 0: 0\); nothing written; rerun"):
    parts.check_one_run(runs, "is running", "nothing written")
