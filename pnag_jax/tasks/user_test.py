"""Tests for user task CSVs and arch lists."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pnag_jax.errors import DataError, PnagError
from pnag_jax.generation.output import ArchWriter
from pnag_jax.generation.sampler import Generated
from pnag_jax.spaces import get_space
from pnag_jax.tasks import read_archs, read_task_csv

_SPACE = get_space("nb201")
_A = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+"
      "|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|")
_B = "|none~0|+|skip_connect~0|none~1|+|skip_connect~0|none~1|none~2|"


def _write(tmp_path, text, name="t.csv"):
  path = tmp_path / name
  path.write_text(text)
  return path


def test_reads_a_task(tmp_path):
  path = _write(tmp_path, f'arch,score,note\n"{_A}",1.5,x\n"{_B}",-2,y\n"{_A}",1.50,dup\n')
  task = read_task_csv(path, "nb201", minimize=True)
  assert (task.name, task.family, task.minimize, task.space, task.source) == (
      "t", "user", True, "nb201", str(path))
  d = task.data()
  np.testing.assert_array_equal(d.genes, _SPACE.from_strings([_A, _B]))
  np.testing.assert_array_equal(d.scores, [1.5, -2.0])
  assert read_task_csv(path, _SPACE, name="mine").name == "mine"


def test_spaces_after_the_commas_are_not_part_of_the_arch(tmp_path):
  path = _write(tmp_path, f'score, arch\n1, {_A}\n2 , {_B} \n')
  np.testing.assert_array_equal(read_task_csv(path, "nb201").data().genes,
                                _SPACE.from_strings([_A, _B]))


def test_blank_lines_above_the_header_are_skipped(tmp_path):
  path = _write(tmp_path, f'\n\narch,score\n"{_A}",1\n"{_B}",2\n')
  assert len(read_task_csv(path, "nb201").data()) == 2


def test_isomorphs_are_not_merged(tmp_path):
  cells = _SPACE.enumerate()
  canon = np.asarray(_SPACE.canonicalize(cells))
  code = int(np.flatnonzero((canon != cells).any(-1))[0])
  a, b = _SPACE.to_strings(np.stack([cells[code], canon[code]]))
  assert a != b
  path = _write(tmp_path, f'arch,score\n"{a}",1\n"{b}",2\n')
  assert len(read_task_csv(path, "nb201").data()) == 2


@pytest.mark.parametrize("text,match", [
    ("", "is empty"),
    ("arch,value\nx,1\n", "lacks column.*score"),
    (f'arch,score\n"{_A}",1\n"|bad~0|",2\n', "data row 2: bad nb201 arch"),
    (f'arch,score\n"{_A}",1\n"{_B}",abc\n', "data row 2: score 'abc' is not a number"),
    (f'arch,score\n"{_A}",1\n"{_B}",1_0\n', "data row 2: score '1_0' is not a number"),
    (f'arch,score\n"{_A}",1\n"{_B}",nan\n', "data row 2: score 'nan' is not finite"),
    (f'arch,score\n"{_A}",1\n"{_B}",-inf\n', "data row 2: score '-inf' is not finite"),
    (f'arch,score\n"{_A}",1\n"{_B}"\n', "data row 2: has 1 field"),
    # A decimal comma: read as a score of 85.
    (f'arch,score\n"{_A}",1\n"{_B}",85,86\n', "data row 2: 3 fields, the header has 2"),
    (f'arch,score\n"{_A}",1\n', "1 distinct arch"),
    (f'arch,score\n"{_A}",1\n"{_A}",1\n', "1 distinct arch"),
    (f'arch,score\n"{_A}",3\n"{_B}",3.0\n', "all 2 scores are equal"),
    (f'arch,score\n"{_A}",1\n"{_B}",2\n"{_A}",1.1\n', "data rows 1 and 3 hold the same arch"),
    (f'arch,score,score\n"{_A}",1,5\n"{_B}",2,6\n', "has column 'score' twice"),
    (f'arch,score,arch\n"{_A}",1,"{_B}"\n"{_B}",2,"{_A}"\n', "has column 'arch' twice"),
    ("\n\n", "is empty"),
])
def test_bad_task_files_are_one_line(tmp_path, text, match):
  path = _write(tmp_path, text)
  with pytest.raises(DataError, match=match) as e:
    read_task_csv(path, "nb201")
  assert "\n" not in str(e.value) and "t.csv" in str(e.value)


def test_missing_file(tmp_path):
  for read in (lambda p: read_task_csv(p, "nb201"), lambda p: read_archs(p, "nb201")):
    with pytest.raises(DataError, match="does not exist"):
      read(tmp_path / "nope.csv")


# Characters of the format, and whole valid archs, so valid rows turn up too.
_TEXT = st.lists(st.sampled_from(list('|+~,"{}:\n\r 0123.-abenix') + [_A, _B, "nan", "arch"]),
                 max_size=60).map("".join)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                               HealthCheck.function_scoped_fixture])
@given(body=_TEXT, header=st.sampled_from(["arch,score\n", "score,arch\n", "arch\n", ""]))
def test_fuzzed_files_fail_cleanly(tmp_path, body, header):
  for suffix in (".csv", ".jsonl"):
    path = tmp_path / f"f{suffix}"
    path.write_text(header + body)
    try:
      task = read_task_csv(path, "nb201")
      assert len(task.data()) >= 2
    except PnagError as e:
      assert "\n" not in str(e)
    try:
      genes = read_archs(path, "nb201")
      assert genes.dtype == np.int32 and genes.shape[1] == 6
    except PnagError as e:
      assert "\n" not in str(e)


@pytest.mark.parametrize("space_name", ["nb201", "mbv3"])
@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_read_archs_round_trips_generated_files(tmp_path, space_name, suffix):
  space = get_space(space_name)
  genes = np.asarray(space.sample(jax.random.key(0), 9))
  path = tmp_path / f"archs{suffix}"
  with ArchWriter(path, space) as w:
    w.write(Generated(genes, np.ones(9, bool), np.ones(9, bool)))
  np.testing.assert_array_equal(read_archs(path, space_name), genes)


def test_read_archs_accepts_native_dicts_in_jsonl(tmp_path):
  space = get_space("mbv3")
  genes = np.asarray(space.sample(jax.random.key(1), 2))
  rows = [json.dumps({"arch": space.to_native(g)}) for g in genes]
  path = _write(tmp_path, "\n".join(rows) + "\n", "a.jsonl")
  np.testing.assert_array_equal(read_archs(path, space), genes)


def test_jsonl_rows_end_at_newlines_only(tmp_path):
  # JSON strings may hold U+2028, U+0085 or a form feed unescaped; str.splitlines would
  # cut a row there.
  space = get_space("nb201")
  rows = [json.dumps({"arch": a, "note": f"x{sep}y"}, ensure_ascii=False)
          for a, sep in [(_A, "\u2028"), (_B, "\x85"), (_A, "\x0c")]]
  path = tmp_path / "a.jsonl"
  path.write_text("\n".join(rows) + "\n", encoding="utf-8")
  np.testing.assert_array_equal(read_archs(path, space), space.from_strings([_A, _B, _A]))


@pytest.mark.parametrize("name,text,match", [
    ("a.csv", "", "is empty"),
    ("a.csv", "x,y\n1,2\n", "lacks column.*arch"),
    ("a.csv", "arch,valid\n", "lists no archs"),
    ("a.csv", f'arch\n"{_A}"\nnope\n', "data row 2: bad nb201 arch"),
    ("a.jsonl", "", "lists no archs"),
    ("a.jsonl", f'{{"arch": "{_A}"}}\n{{"arc": 1}}\n', 'data row 2: expected a JSON object'),
    ("a.jsonl", "{not json\n", "data row 1: not a JSON object"),
    ("a.jsonl", '{"arch": 5}\n', "data row 1: bad nb201 arch"),
])
def test_bad_arch_files_are_one_line(tmp_path, name, text, match):
  path = _write(tmp_path, text, name)
  with pytest.raises(DataError, match=match) as e:
    read_archs(path, "nb201")
  assert "\n" not in str(e.value) and name in str(e.value)
