"""The `pnag` console command: registries, help texts, one-line errors."""

import argparse
import os
import subprocess
import sys

import numpy as np
import pytest

from pnag_jax import cli


def test_spaces_lists_every_space_with_size(pnag):
  r = pnag("spaces")
  assert r.returncode == 0, r.stderr
  assert "nb201: N=8, 7 node ops, fixed adjacency, size 15,625" in r.stdout
  assert f"({7371**5})" in r.stdout  # MBV3
  for name in ("darts", "autoformer", "autoformer_base"):
    assert f"{name}: N=" in r.stdout


def _subparsers(parser):
  # pylint: disable-next=protected-access
  actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
  return actions[0].choices if actions else {}


def _all_commands():
  """(path, parser) of every command, its arguments loaded."""
  out = []
  stack = [((), cli.build_parser())]
  while stack:
    path, parser = stack.pop()
    subs = _subparsers(parser)
    for name, sub in subs.items():
      stack.append((path + (name,), sub.load()))
    if not subs:
      out.append((path, parser))
  return sorted(out)


def test_registries_cover_every_command():
  paths = [" ".join(p) for p, _ in _all_commands()]
  protocols = {"vun", "speed", "quality", "scc-ablation", "executable", "transfer",
               "objectives", "families", "conditional", "ofa", "scaling"}
  assert paths == sorted(["demo", "generate", "predict", "spaces", "tasks", "train-arch",
                          "train stage1", "train stage2", "train surrogate",
                          *(f"eval {p}" for p in protocols)])
  assert set(cli.TRAIN_STAGES) == {"stage1", "stage2", "surrogate"}
  assert set(cli.EVAL_PROTOCOLS) == protocols


def test_every_option_has_help_defaults_and_an_example():
  for path, parser in _all_commands():
    assert parser.description, path
    assert "example:" in (parser.epilog or ""), path
    for action in parser._actions:  # pylint: disable=protected-access
      assert action.help, (path, action.dest)
    text = parser.format_help()
    for action in parser._actions:  # pylint: disable=protected-access
      d = action.default
      if action.option_strings and not (d is None or d is False or d == []
                                        or d is argparse.SUPPRESS):
        assert f"(default: {d})" in " ".join(text.split()), (path, action.dest)
        # The formatter adds it: written in the help too, it would print twice.
        assert "default" not in action.help, (path, action.dest)
    if path == ("generate",):  # a zero default is still shown
      assert "(default: 0)" in " ".join(text.split())


def test_train_help_lists_the_stages_and_the_spaces(pnag_main):
  code, out, _ = pnag_main("train", "--help")
  assert code == 0
  assert all(stage in out for stage in ("stage1", "stage2", "surrogate"))
  assert "not built yet" not in out  # every stage listed trains
  assert "nb201, mbv3, mbv3_r, darts, autoformer, autoformer_base" in out


def test_bad_input_from_the_console_is_one_line_without_traceback(pnag):
  r = pnag("spaces", "nb202")
  assert r.returncode == 2
  assert r.stderr == ("pnag: error: unknown search space 'nb202'; known spaces: nb201, mbv3, "
                      "mbv3_r, darts, autoformer, autoformer_base\n")


@pytest.mark.parametrize("args, fragment", [
    (("spaces", "nb202"), "unknown search space 'nb202'; known spaces: nb201, mbv3, mbv3_r, darts"),
    (("demo", "--num", "0"), "--num must be positive"),
    (("demo", "--steps", "0"), "--steps must be positive"),
    (("demo", "--num", "abc"), "invalid int value"),
    (("frobnicate",), "invalid choice"),
    (("train", "stage3", "--workdir", "/tmp/x"), "invalid choice"),
    (("train", "stage2", "--workdir", "/tmp/x"), "no stage-1 checkpoints under /tmp/x"),
    (("demo", "--num", "10", "--data-dir", "/definitely/not/here"), "does not exist"),
    (("train", "stage1", "--workdir", "/tmp/x", "--data-dir", "/not/here"), "does not exist"),
    (("train", "stage1", "--space", "nb202", "--workdir", "/tmp/x"), "unknown search space"),
    (("train", "stage1", "--workdir", "/tmp/x", "--set", "dim=abc"), "expected int"),
    (("train", "stage1", "--workdir", "/tmp/x", "--preset", "fast"), "invalid choice"),
    (("train", "stage1", "--workdir", ""), "--workdir is empty"),
    (("generate", "--workdir", "/tmp/x", "--num", "5", "--out", ""), "--out is empty"),
    (("eval", "vun", "--out", "/tmp/x", "--num", "0"), "--num and --seeds must be >= 1"),
    (("eval", "vun", "--out", "/tmp/x", "--seeds", "0"), "--num and --seeds must be >= 1"),
    (("eval", "ofa", "--workdir", "/tmp/x", "--out", "/tmp/x", "--ratio", "600"),
     "--ratio 600 leaves the guided search no calls"),
    (("eval", "quality", "--workdir", "/tmp/x", "--out", "/tmp/x", "--seeds", "0"),
     "--num and --seeds must be >= 1"),
])
def test_bad_input_is_one_line(pnag_main, args, fragment):
  code, _, err = pnag_main(*args)
  assert code == 2
  assert fragment in err
  assert len(err.strip().splitlines()) == 1, err


def test_running_out_of_memory_is_one_line_and_other_runtime_errors_are_not_hidden(
    pnag_main, monkeypatch, tmp_path):
  import jax  # pylint: disable=g-import-not-at-top
  from pnag_jax.generation import run as run_lib  # pylint: disable=g-import-not-at-top
  raised = []

  def load_sampler(*args, **kw):
    raise raised[-1]

  monkeypatch.setattr(run_lib, "load_sampler", load_sampler)
  args = ("generate", "--workdir", tmp_path, "--num", "5", "--out", tmp_path / "a.csv")
  for error in (jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating "
                                           "20016000320 bytes."), MemoryError()):
    raised.append(error)
    code, _, err = pnag_main(*args)
    assert code == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("pnag: error: out of memory (") and "--chunk-size" in err
  raised.append(jax.errors.JaxRuntimeError("INTERNAL: a bug"))
  with pytest.raises(jax.errors.JaxRuntimeError, match="INTERNAL"):
    pnag_main(*args)


def test_the_console_command_ends_an_interrupted_run_at_once(monkeypatch):
  from pnag_jax import cli  # pylint: disable=g-import-not-at-top
  ended = []

  def os_exit(code):  # stands in for os._exit, which would end pytest
    ended.append(code)
    raise SystemExit("os._exit")

  monkeypatch.setattr(cli.os, "_exit", os_exit)
  argvs = []
  for code, how in ((130, "os._exit"), (2, 2), (0, 0)):
    monkeypatch.setattr(cli, "main", lambda argv, code=code: argvs.append(argv) or code)
    with pytest.raises(SystemExit) as e:
      cli.console(["train", "stage1", "--help"])  # as train/stage1.py passes its own
    assert e.value.code == how
  assert ended == [130] and argvs == [["train", "stage1", "--help"]] * 3


@pytest.mark.parametrize("unbuffered", [True, False])
def test_a_reader_that_left_ends_the_command_quietly(unbuffered):
  # `pnag spaces | head`, the pipe closed before the command prints: unbuffered, a
  # print fails inside `main`; buffered, the console's last flush does.
  read, write = os.pipe()
  os.close(read)
  env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
  r = subprocess.run([sys.executable, "-m", "pnag_jax.cli", "spaces"], stdout=write,
                     stderr=subprocess.PIPE, text=True, timeout=120, check=False,
                     env={**env, **({"PYTHONUNBUFFERED": "1"} if unbuffered else {})})
  os.close(write)
  assert r.returncode == 141 and r.stderr == "", r.stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("unbuffered", [True, False])
def test_a_full_stdout_or_a_closed_one_is_no_traceback(unbuffered):
  env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
  env.update({"PYTHONUNBUFFERED": "1"} if unbuffered else {})
  with open("/dev/full", "w", encoding="utf-8") as full:
    r = subprocess.run([sys.executable, "-m", "pnag_jax.cli", "spaces"], stdout=full,
                       stderr=subprocess.PIPE, text=True, timeout=120, check=False, env=env)
  assert r.returncode == 1, r.stderr
  assert r.stderr == "pnag: error: [Errno 28] No space left on device\n"
  # Closed: Python has no sys.stdout at all, and the output has nowhere to go.
  r = subprocess.run(["sh", "-c", 'exec "$0" -m pnag_jax.cli spaces >&-', sys.executable],
                     stderr=subprocess.PIPE, text=True, timeout=120, check=False, env=env)
  assert r.returncode == 0 and r.stderr == "", r.stderr


def test_the_demo_checks_a_surrogate_in_its_workdir_before_it_trains(pnag_main, tmp_path,
                                                                       nb201_surrogate):
  # The suite's surrogate (test preset): not the guided step's quick one. The demo used
  # to find out after stage 1, generation and the tables, and reported nothing.
  (tmp_path / "w").mkdir()
  (tmp_path / "w" / "surrogate").symlink_to(nb201_surrogate[0] / "surrogate")
  code, out, err = pnag_main("demo", "--workdir", tmp_path / "w", "--guided", "--num", "10")
  assert code == 2 and err.count("\n") == 1, err
  assert "holds a surrogate with other" in err and "than the guided step's" in err
  assert sorted(p.name for p in (tmp_path / "w").iterdir()) == ["surrogate"]


def test_the_demo_checks_the_tables_before_it_trains(pnag_main, tmp_path, data_dir):
  (tmp_path / "nb201").mkdir()
  header, *rows = (data_dir / "nb201" / "nb201_accuracy.csv").read_text().splitlines()
  (tmp_path / "nb201" / "nb201_accuracy.csv").write_text("\n".join([header, *rows[:5]]))
  # It trained and generated first, and then failed on the table.
  code, out, err = pnag_main("demo", "--data-dir", tmp_path, "--workdir", tmp_path / "w")
  assert code == 2 and "one row per NB201 cell" in err and out == "", out
  assert not (tmp_path / "w").exists()


def test_a_protocol_refused_for_its_run_leaves_no_out_directory(pnag_main, tmp_path):
  out = tmp_path / "out"
  for args, fragment in ((("quality", "--workdir", tmp_path / "none"), "no stage-1 checkpoints"),
                         (("vun", "--run", f"nb201={tmp_path / 'none'}"), "no stage-1")):
    code, _, err = pnag_main("eval", *args, "--out", out)
    assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists(), args


def test_an_out_that_is_a_file_is_refused_before_any_build(pnag_main, tmp_path):
  out = tmp_path / "a_file"
  out.write_text("precious\n")
  code, _, err = pnag_main("eval", "executable", "--random", "--space", "nb201", "--num", "2",
                           "--out", out)
  assert code == 2 and "is a file, not a directory" in err and len(err.splitlines()) == 1
  assert out.read_text() == "precious\n"


def test_train_arch_bad_input_is_one_line(pnag_main, tmp_path):
  cell = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|nor_conv_1x1~1|none~2|"
  mismatched = tmp_path / "mismatched.npz"  # 8x8 train images, 9x9 test images
  np.savez(mismatched, x_train=np.zeros((4, 8, 8)), y_train=np.zeros(4, int),
           x_test=np.zeros((2, 9, 9)), y_test=np.zeros(2, int))
  for args, fragment in [
      (("--arch", "|conv~0|"), "NB201 arch string"),
      (("--arch", cell, "--dataset", "mnist"), "unknown dataset 'mnist'"),
      (("--arch", cell, "--dataset", f"npz:{tmp_path / 'none.npz'}"), "does not exist"),
      (("--arch", cell, "--dataset", f"npz:{mismatched}"), "equal H, W, C"),
      (("--arch", cell, "--space", "nb202"), "unknown search space"),
  ]:
    code, out, err = pnag_main("train-arch", "--space", "nb201", *args, "--workdir",
                               tmp_path / "w")
    assert code == 2, (args, out)
    assert fragment in err, err
    assert len(err.strip().splitlines()) == 1, err


def test_train_on_a_workdir_of_another_space_is_one_line(untrained_run, stage1_saver,
                                                         tmp_path, pnag_main):
  stage1_saver(untrained_run("nb201", dim=8, decoder_hidden=32), tmp_path)
  code, _, err = pnag_main("train", "stage1", "--workdir", tmp_path, "--space", "mbv3")
  assert code == 2 and len(err.strip().splitlines()) == 1
  assert "holds a stage-1 run with space 'nb201'; --space mbv3 disagrees" in err
