import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pnag_jax.errors import PnagError
from pnag_jax.evaluation import executable
from pnag_jax.spaces import darts as darts_space
from pnag_jax.spaces import get_space

# On the worker of the suite's trained run: tests/generation_e2e_test.py checks its
# archs op by op in-process, and reuses the ops these tests compile.
pytestmark = pytest.mark.xdist_group("trained_run")

# Uniform samples (eval/reports/executable_<space>/ holds the 100-arch runs of every
# space): two NB201 cells, whose networks compile in seconds (and two distinct networks
# must be counted as two). A DARTS, MBV3 or AutoFormer network is a compile of 10-25 s
# on 2 CPU cores; the protocol is the same, and pnag_jax/networks/ builds and runs
# sampled networks of each with the same builders. For a few networks the compiled
# check is the quicker one (op by op, the CLI's default, pays off over many archs;
# tests below and tests/ run it).
@pytest.mark.parametrize("space, num", [("nb201", 2)])
def test_sampled_archs_build_run_and_train(tmp_path, space, num):
  rep = executable.run(tmp_path, random=True, space=space, num=num, jit=True, progress=False)
  s = rep["summary"]["random"]
  assert s["num"] == num and s["valid"] == 1.0
  assert s["executable"] == 1.0, rep["groups"]["random"]
  assert rep["distinct_networks_checked"] == num
  assert json.loads((tmp_path / "executable.json").read_text())["space"] == space


def test_jitted_check_agrees_with_op_by_op():
  nb201 = get_space("nb201")
  genes = nb201.from_string(
      "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|")
  key = jax.random.key(3)
  assert (executable.check_network("nb201", genes, key=key, jit=True) ==
          executable.check_network("nb201", genes, key=key) ==
          {"built": True, "forward_finite": True, "loss_finite": True, "step_finite": True})


def test_non_finite_networks_are_not_executable(monkeypatch):
  # A network with an overflowed classifier must be reported, not pass.
  real_build = executable.registry.build_network

  def overflowing(*args, **kwargs):
    model = real_build(*args, **kwargs)
    kernel = model.classifier.kernel
    kernel[...] = jnp.full(kernel.shape, jnp.inf)
    return model

  monkeypatch.setattr(executable.registry, "build_network", overflowing)
  genes = get_space("nb201").from_string(
      "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|"
      "nor_conv_3x3~2|")
  r = executable.check_network("nb201", genes, key=jax.random.key(0))
  assert r["built"] and not (r["forward_finite"] or r["loss_finite"] or r["step_finite"])
  rows = executable.check_genes("nb201", genes[None], np.array([True]), key=jax.random.key(1),
                                full_size=False, jit=False, cache={})
  assert not rows[0]["executable"]
  # An invalid decode can clip to a valid arch's genes: checked first, it once made the
  # valid arch "not built" too.
  rows = executable.check_genes("nb201", np.stack([genes, genes]), np.array([False, True]),
                                key=jax.random.key(1), full_size=False, jit=False, cache={})
  assert [(r["valid"], r["built"]) for r in rows] == [(False, False), (True, True)]


def test_from_file_and_unbuildable_archs(tmp_path):
  f = tmp_path / "a.jsonl"
  # NB201's disconnected all-`none` cell is a benchmark network (it trains to chance).
  f.write_text("\n".join(json.dumps({"arch": a}) for a in (
      "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|",
      "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|")) + "\n")
  # Compiled: two compiles are quicker than a first op-by-op pass (the op-by-op check is
  # tested above, and through the CLI in tests/generation_e2e_test.py).
  rep = executable.run(tmp_path, from_file=str(f), space="nb201", jit=True, progress=False)
  assert [r["executable"] for r in rep["groups"]["file"]] == [True, True]
  assert rep["num"] == 2  # a file's archs are all checked unless --num says otherwise
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
  binary = tmp_path / "binary.jsonl"
  binary.write_bytes(b'\xff\xfe{"arch": 1}\n')
  with pytest.raises(PnagError, match=r"^cannot read binary\.jsonl"):
    executable.run(tmp_path, from_file=str(binary), space="nb201")
  bad = tmp_path / "bad.jsonl"
  bad.write_text('{"arch": "|conv~0|"}\n')
  with pytest.raises(PnagError, match="bad.jsonl"):
    executable.run(tmp_path, from_file=str(bad), space="nb201")
  bad.write_text("not json\n")
  with pytest.raises(PnagError, match="bad.jsonl, data row 1: not a JSON object"):
    executable.run(tmp_path, from_file=str(bad), space="nb201")
  bad.write_text("[" * 100_000 + "]" * 100_000 + "\n")  # a RecursionError in json, not a traceback
  with pytest.raises(PnagError, match="bad.jsonl, data row 1: not a JSON object"):
    executable.run(tmp_path, from_file=str(bad), space="nb201")
  with pytest.raises(PnagError, match="--space is required"):
    executable.run(tmp_path, random=True)
  with pytest.raises(PnagError, match="--workdir"):
    executable.run(tmp_path, random=True, space="nb201", constrained=True)


def test_a_space_that_disagrees_with_the_workdir(nb201_workdir, tmp_path):
  with pytest.raises(PnagError, match="holds a nb201 run; --space mbv3 disagrees"):
    executable.run(tmp_path, workdir=str(nb201_workdir), space="mbv3", num=1, progress=False)


def test_num_takes_the_first_archs_of_a_file_and_records_how_many(tmp_path):
  # A CSV as `pnag generate` writes it (the arch column quoted, other columns ignored).
  f = tmp_path / "a.csv"
  f.write_text('rank,arch,nb201_index\n'
               '1,"|none~0|+|none~0|none~1|+|none~0|none~1|none~2|",0\n'
               '2,"|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|",1\n')
  rep = executable.run(tmp_path, from_file=str(f), space="nb201", num=1, jit=True,
                       progress=False)
  assert rep["num"] == rep["summary"]["file"]["num"] == 1
  saved = json.loads((tmp_path / "executable.json").read_text())
  assert saved["num"] == 1 and len(saved["groups"]["file"]) == 1
