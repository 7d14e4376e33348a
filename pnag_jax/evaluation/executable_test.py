import json

import pytest

from pnag_jax.errors import PnagError
from pnag_jax.evaluation import executable
from pnag_jax.spaces import darts as darts_space
from pnag_jax.spaces import get_space


# MBV3 and AutoFormer networks take minutes each to compile on 2 CPU cores; their
# builders are tested in pnag_jax/networks/, and `pnag eval executable --random`
# covers them outside the suite.
@pytest.mark.parametrize("space, num", [("nb201", 2)])  # DARTS: DARTS_V2 below
def test_sampled_archs_build_run_and_train(tmp_path, space, num):
  rep = executable.run(tmp_path, random=True, space=space, num=num, progress=False)
  s = rep["summary"]["random"]
  assert s["num"] == num and s["valid"] == 1.0
  assert s["executable"] == 1.0, rep["groups"]["random"]
  assert json.loads((tmp_path / "executable.json").read_text())["space"] == space


def test_from_file_and_unbuildable_archs(tmp_path):
  f = tmp_path / "a.jsonl"
  # NB201's disconnected all-`none` cell is a benchmark network (it trains to chance).
  f.write_text("\n".join(json.dumps({"arch": a}) for a in (
      "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|",
      "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")) + "\n")
  rep = executable.run(tmp_path, from_file=str(f), space="nb201", progress=False)
  assert [r["executable"] for r in rep["groups"]["file"]] == [True, True]
  # A DARTS genotype whose first node reads a later node parses but is no network, so it
  # is never built. (Building DARTS networks is tested in pnag_jax/networks/darts_test.py.)
  darts = get_space("darts")
  genes = darts.from_string(repr(darts_space.DARTS_V2))
  genes[8] = 5  # normal cell, pair 0 (node 2) reads node 5
  f.write_text(json.dumps({"arch": darts.to_string(genes)}) + "\n")
  rep = executable.run(tmp_path, from_file=str(f), space="darts", progress=False)
  rows = rep["groups"]["file"]
  assert [(r["valid"], r["built"], r["executable"]) for r in rows] == [(False, False, False)]


def test_bad_input(tmp_path):
  with pytest.raises(PnagError, match="exactly one of"):
    executable.run(tmp_path, random=True, from_file="x.jsonl", space="nb201")
  with pytest.raises(PnagError, match="does not exist"):
    executable.run(tmp_path, from_file=str(tmp_path / "none.jsonl"), space="nb201")
  bad = tmp_path / "bad.jsonl"
  bad.write_text('{"arch": "|conv~0|"}\n')
  with pytest.raises(PnagError, match="bad.jsonl"):
    executable.run(tmp_path, from_file=str(bad), space="nb201")
  bad.write_text("not json\n")
  with pytest.raises(PnagError, match="bad.jsonl:1"):
    executable.run(tmp_path, from_file=str(bad), space="nb201")
  with pytest.raises(PnagError, match="--space is required"):
    executable.run(tmp_path, random=True)
