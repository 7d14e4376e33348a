"""The `pnag` command line: generate neural architectures with PNAG in JAX.

Every command lives in a registry below: a name, a one-line help and the module that
implements it with `add_arguments(parser)` and `main(args)`. `pnag train <stage>` and
`pnag eval <protocol>` are registries of their own, so adding a stage or a protocol is
one entry. A command's module is imported only when that command runs (or its
`--help` is asked for), so the others cost nothing.

Input errors (`PnagError`) print one line and exit 2; no traceback reaches the user
for them. Nor for running out of memory, which is what asking for too much at once
(say `--chunk-size`) comes to.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import errno
import importlib
import os
import signal
import sys
from collections.abc import Sequence

from pnag_jax import atomic
from pnag_jax.errors import PnagError, one_line


@dataclasses.dataclass(frozen=True)
class Command:
  """A subcommand: `module` defines `add_arguments(parser)` and `main(args)`."""

  help: str
  module: str


#: `pnag <command>`.
COMMANDS = {
    "spaces": Command("list the search spaces: N, vocabulary, size", "pnag_jax.spaces.cli"),
    "tasks": Command("list a space's tasks: name, family, direction, archs", "pnag_jax.tasks.cli"),
    "demo": Command("the main job on NB201: train, generate, report (minutes)",
                    "pnag_jax.demo"),
    "generate": Command("generate architectures from a trained stage-1 run",
                        "pnag_jax.generation.run"),
    "predict": Command("predict a task's scores for archs from K measured references",
                       "pnag_jax.guidance.run"),
    "train-arch": Command("train one architecture's network on real data",
                          "pnag_jax.arch_training.train"),
}

#: `pnag train <stage>`.
TRAIN_STAGES = {
    "stage1": Command("the VQ-VAE: jraph encoder, MSQ over one codebook, SCC, linear decoder",
                      "pnag_jax.training.stage1"),
    "stage2": Command("the next-scale transformer prior (VAR-style, AdaLN) on stage 1",
                      "pnag_jax.training.stage2"),
    "surrogate": Command("the stage-3 meta-learned surrogate over a space's tasks",
                         "pnag_jax.training.surrogate"),
}

#: `pnag eval <protocol>`.
EVAL_PROTOCOLS = {
    "vun": Command("validity / uniqueness / novelty (paper Table 6)", "pnag_jax.evaluation.vun"),
    "speed": Command("generation throughput and batch-1 latency", "pnag_jax.evaluation.speed"),
    "quality": Command("NB201 accuracy of generated vs random cells (Fig. 4b/c)",
                       "pnag_jax.evaluation.quality"),
    "scc-ablation": Command("validity and quality against SCC t_max (Fig. 3)",
                            "pnag_jax.evaluation.scc_ablation"),
    "executable": Command("build, run and step each arch's network",
                          "pnag_jax.evaluation.executable"),
    "transfer": Command("leave-dataset-out transfer from K measured archs (Table 1)",
                        "pnag_jax.evaluation.transfer"),
    "families": Command("transfer to unseen task families and devices (Spearman by K)",
                        "pnag_jax.evaluation.families"),
    "objectives": Command("objective-specific generation: clean, APGD, FGSM (Table 5)",
                          "pnag_jax.evaluation.objectives"),
    "ofa": Command("MBV3 under a Note10 latency budget: guided generation vs OFA's evolution",
                   "pnag_jax.evaluation.ofa"),
    "scaling": Command("generation throughput against devices and processes (multi-host)",
                       "pnag_jax.evaluation.scaling"),
    "conditional": Command("stage 2's target-quantile sweep: achieved vs target",
                           "pnag_jax.evaluation.conditional"),
}


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
  """Defaults in every option's help (none for flags and unset options); epilogs verbatim."""

  def _get_help_string(self, action):
    if _shows_no_default(action):
      return action.help
    return super()._get_help_string(action)


def _shows_no_default(action: argparse.Action) -> bool:
  """Unset options, flags and empty repeatables: a default there says nothing."""
  default = action.default
  return default is None or default is False or default is argparse.SUPPRESS or default == []


class _Parser(argparse.ArgumentParser):
  """One-line errors; a command's arguments are added when that command is parsed."""

  def __init__(self, *args, module: str | None = None, **kwargs):
    kwargs.setdefault("formatter_class", _Formatter)
    super().__init__(*args, **kwargs)
    self._module = module

  def error(self, message):
    self.exit(2, f"{self.prog}: error: {message} (see --help)\n")

  def load(self) -> "_Parser":
    """Adds the command's arguments (once), from its module."""
    if self._module is not None:
      module = importlib.import_module(self._module)
      module.add_arguments(self)
      self.set_defaults(func=module.main)
      self._module = None
    return self

  def parse_known_args(self, args=None, namespace=None):
    return super(_Parser, self.load()).parse_known_args(args, namespace)


def _add_registry(parent: argparse.ArgumentParser, dest: str, registry: dict[str, Command],
                  title: str) -> None:
  sub = parent.add_subparsers(dest=dest, required=True, title=title, parser_class=_Parser,
                              metavar="{" + ",".join(registry) + "}")
  for name, cmd in registry.items():
    sub.add_parser(name, help=cmd.help, description=cmd.help, module=cmd.module)


def build_parser() -> argparse.ArgumentParser:
  from pnag_jax.spaces import SPACE_NAMES  # pylint: disable=g-import-not-at-top
  parser = _Parser(prog="pnag", description=__doc__.splitlines()[0])
  sub = parser.add_subparsers(dest="command", required=True, title="commands",
                              parser_class=_Parser)
  for name, cmd in COMMANDS.items():
    sub.add_parser(name, help=cmd.help, description=cmd.help, module=cmd.module)
  train = sub.add_parser(
      "train", help="train a stage (resumes from the latest checkpoint)",
      description="Train one stage of PNAG under WORKDIR/<stage>; rerunning the same "
                  "command resumes from the latest checkpoint.",
      epilog=f"spaces: {', '.join(SPACE_NAMES)}\n\nexample:\n  pnag train stage1 "
             "--space nb201 --workdir runs/nb201 --preset quick")
  _add_registry(train, "stage", TRAIN_STAGES, "stages")
  evaluate = sub.add_parser(
      "eval", help="the paper's evaluation protocols (JSON + PNG under --out)",
      description="The paper's evaluation protocols; each writes JSON (and Markdown and "
                  "PNG where it plots) under --out.",
      epilog="example:\n  pnag eval vun --run nb201=runs/nb201 --out eval/reports/vun")
  _add_registry(evaluate, "protocol", EVAL_PROTOCOLS, "protocols")
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  parser = build_parser()
  try:
    args = parser.parse_args(argv)
    for name in ("workdir", "out"):
      if getattr(args, name, None) == "":  # pathlib reads "" as ".": the current folder
        raise PnagError(f"--{name} is empty")
    # A protocol refused (or failed) after making --out leaves no empty folder.
    out = getattr(args, "out", None) if args.command == "eval" else None
    with atomic.no_empty_dirs_on_failure(out):
      args.func(args)
  except PnagError as e:
    print(f"pnag: error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print("pnag: interrupted", file=sys.stderr)
    return 130
  except BrokenPipeError:
    return _reader_gone()
  except OSError as e:
    if e.errno not in _STORAGE_ERRORS:
      raise
    return _storage_failed(e)
  except Exception as e:  # pylint: disable=broad-exception-caught  # re-raised unless memory
    if not _out_of_memory(e):
      raise
    print(f"pnag: error: out of memory ({one_line(e, 200)}); ask for less at once (a "
          "smaller --num, --chunk-size or batch, where the command takes one)",
          file=sys.stderr)
    return 2
  return 0


def _out_of_memory(e: Exception) -> bool:
  """A host allocation that failed, or XLA's on a device (the host's included)."""
  jax = sys.modules.get("jax")  # not imported by commands that never touch it
  return isinstance(e, MemoryError) or (
      jax is not None and isinstance(e, jax.errors.JaxRuntimeError)
      and str(e).startswith("RESOURCE_EXHAUSTED"))


#: What the storage refuses, not the command: a full disk, a quota, a file size limit.
_STORAGE_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EIO})


def _storage_failed(e: OSError) -> int:
  """A write the storage refused (training's log on a full disk, stdout at /dev/full):
  one line. What the command wrote is as at an interrupt: files are complete or
  removed, and a training run resumes from its last checkpoint."""
  print(f"pnag: error: {one_line(e, 300)}", file=sys.stderr)
  try:
    if sys.stdout is not None:
      sys.stdout.flush()
  except OSError as flush_error:
    if flush_error.errno in _STORAGE_ERRORS:  # stdout's: the last flush would fail again
      _stdout_to_devnull()
  return 1


def _stdout_to_devnull() -> None:
  devnull = os.open(os.devnull, os.O_WRONLY)
  os.dup2(devnull, sys.stdout.fileno())
  os.close(devnull)


def _reader_gone() -> int:
  """stdout's reader left (`pnag tasks | head`): end quietly, with the exit code of a
  tool that SIGPIPE ended. What the command wrote to files is complete or removed: the
  error unwound through every `with`, and results are printed after they are written.
  stdout goes to /dev/null first, or the interpreter's last flush fails once more."""
  _stdout_to_devnull()
  return 128 + signal.SIGPIPE


def console(argv: Sequence[str] | None = None) -> None:
  """The `pnag` console command (and `train/*.py`): `main`, then exit with its code.

  Interrupted, the process ends at once (`os._exit`) once its output is flushed: a
  Ctrl-C that lands while XLA compiles leaves the compiler's threads running, and the
  interpreter's shutdown then crashed in them (exit 139, not 130). What the command
  wrote is closed by then (the interrupt unwound through every `with`; checkpoints are
  saved synchronously). Skipped are the exit handlers, JAX's included: a process of a
  multi-process run leaves without disconnecting, and its peers learn of it from the
  runtime's heartbeat.
  """
  for fd in (0, 1, 2):
    try:
      os.fstat(fd)
    except OSError:
      # Started with it closed: the first file opened would take its number, and
      # whatever writes to that stream would write into the file.
      os.open(os.devnull, os.O_RDWR)
  code = main(argv)
  try:
    if sys.stdout is not None:  # None where the command ran with stdout closed
      sys.stdout.flush()  # what is still buffered: a pipe closed early fails only now
  except BrokenPipeError:
    code = _reader_gone()
  except OSError as e:
    if e.errno not in _STORAGE_ERRORS:
      raise
    code = _storage_failed(e)
  if code == 130:
    for stream in (sys.stdout, sys.stderr):
      if stream is not None:
        with contextlib.suppress(OSError):
          stream.flush()
    os._exit(code)  # pylint: disable=protected-access
  sys.exit(code)


if __name__ == "__main__":
  console()
