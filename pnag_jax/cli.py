"""The `pnag` command line.

Input errors (`PnagError`) print one line and exit 2; no traceback reaches the user
for them. Subcommands register themselves in `_COMMANDS`, so `train`, `generate` and
`eval` slot in beside `spaces` and `demo`.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from pnag_jax.errors import PnagError


class _OneLineParser(argparse.ArgumentParser):
  """argparse prints usage plus an error; we promise one line."""

  def error(self, message):
    self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _cmd_spaces(args: argparse.Namespace) -> None:
  from pnag_jax.spaces import SPACE_NAMES, get_space  # pylint: disable=g-import-not-at-top
  names = SPACE_NAMES if not args.space else [args.space]
  for name in names:
    space = get_space(name)
    size = space.size()
    size_str = f"{size:,}" if size < 10**9 else f"{size:.4e} ({size})"
    print(f"{space.name}: N={space.num_nodes}, {space.num_ops} node ops, "
          f"{'fixed' if space.fixed_adjacency else 'generated'} adjacency, size {size_str}")
    print(f"  node ops: {', '.join(space.node_ops)}")


def _cmd_demo(args: argparse.Namespace) -> None:
  from pnag_jax import demo  # pylint: disable=g-import-not-at-top
  demo.run(num=args.num, seed=args.seed, data_dir=args.data_dir, workdir=args.workdir)


def _cmd_train(args: argparse.Namespace) -> None:
  from pnag_jax.configs.stage1 import make_config  # pylint: disable=g-import-not-at-top
  from pnag_jax.training import stage1  # pylint: disable=g-import-not-at-top
  from pnag_jax.spaces import get_space  # pylint: disable=g-import-not-at-top
  get_space(args.space)  # an unknown space fails here, before any work
  if args.data_dir is not None:
    # Stage 1 reads no tables (NB201's split is over cell codes), but a bad directory
    # given explicitly is still the user's mistake, so it fails now, not in a later stage.
    from pnag_jax.data import resolve_data_dir  # pylint: disable=g-import-not-at-top
    resolve_data_dir(args.data_dir)
  cfg = make_config(args.preset, space=args.space, seed=args.seed, overrides=args.set)
  report = stage1.train_and_evaluate(cfg, args.workdir)
  print(f"stage1 {report['space']}: {report['steps']} steps in {report['train_seconds']:.1f} s, "
        f"held-out exact match {report['heldout_exact_match']:.4f}, "
        f"train {report['train_exact_match']:.4f}")
  print(f"  step validity: {' '.join(f'{v:.3f}' for v in report['step_validity'])}")
  print(f"  report: {args.workdir}/stage1/report.json")


def _cmd_generate(args: argparse.Namespace) -> None:
  from pnag_jax.generation import GenerationConfig  # pylint: disable=g-import-not-at-top
  from pnag_jax.generation.run import generate_to_file  # pylint: disable=g-import-not-at-top
  cfg = GenerationConfig(prior=args.prior, temperature=args.temperature,
                         constrained=args.constrained, chunk_size=args.chunk_size)
  r = generate_to_file(args.workdir, args.num, args.seed, args.out, cfg,
                       data_dir=args.data_dir)
  print(f"generated {r['num']:,} {r['space']} archs in {r['seconds']:.1f} s "
        f"({r['num'] / r['seconds']:,.0f}/s incl. writing) -> {r['out']}")
  print(f"  validity {100 * r['validity']:.2f}% (format {100 * r['format_validity']:.2f}%), "
        f"uniqueness {100 * r['uniqueness']:.2f}%; prior {r['prior']}, "
        f"temperature {r['temperature']:g}{', constrained' if r['constrained'] else ''}")


def _add_generate(sub) -> None:
  p = sub.add_parser("generate", help="generate architectures from a trained stage-1 run")
  p.add_argument("--workdir", required=True)
  p.add_argument("--num", type=int, required=True)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--out", required=True, help="F.jsonl or F.csv")
  p.add_argument("--prior", default="codes", choices=["latent", "fitted", "codes"])
  p.add_argument("--temperature", type=float, default=None,
                 help="0 = argmin/mode; default: argmin (latent priors), 1 (codes)")
  p.add_argument("--constrained", action="store_true",
                 help="mask the decoder's logits with the space grammar")
  p.add_argument("--chunk-size", type=int, default=8192)
  p.add_argument("--data-dir", help="directory holding nb201/ (default: $PNAG_DATA_DIR)")
  p.set_defaults(func=_cmd_generate)


def _parse_runs(items: Sequence[str]) -> dict[str, str]:
  runs = {}
  for item in items:
    space, sep, workdir = item.partition("=")
    if not sep or not space or not workdir:
      raise PnagError(f"--run expects SPACE=WORKDIR, got {item!r}")
    runs[space] = workdir
  return runs


def _cmd_eval(args: argparse.Namespace) -> None:
  # pylint: disable=g-import-not-at-top
  if args.protocol == "vun":
    from pnag_jax.evaluation import vun
    from pnag_jax.spaces import get_space
    runs = _parse_runs(args.run)
    for name in list(runs) + list(args.space):
      get_space(name)
    report = vun.run(runs, args.out, spaces=tuple(args.space), num=args.num,
                     seeds=tuple(range(args.seeds)))
    print(vun.format_table(report))
    print(f"\nwrote {args.out}/vun.json, vun.md, vun.png")
  elif args.protocol == "speed":
    from pnag_jax.evaluation import speed
    report = speed.run(args.workdir, args.out, max_log2=args.max_log2)
    print(speed.format_table(report))
    print(f"\nwrote {args.out}/speed.json, speed.md, speed.png")
  elif args.protocol == "scc-ablation":
    from pnag_jax.evaluation import scc_ablation
    report = scc_ablation.run(args.space, args.out, seeds=tuple(range(args.seeds)),
                              t_max_values=args.t_max, num=args.num, data_dir=args.data_dir,
                              extra_overrides=args.set)
    print(scc_ablation.format_table(report))
    print(f"\nwrote {args.out}/scc_ablation.json, scc_ablation.md, scc_ablation.png")
  elif args.protocol == "executable":
    from pnag_jax.evaluation import executable
    report = executable.run(args.out, workdir=args.workdir, from_file=args.from_file,
                            space=args.space, random=args.random, num=args.num,
                            seed=args.seed, full_size=args.full_size, jit=args.jit,
                            constrained=args.constrained)
    print(executable.format_table(report))
    print(f"\nwrote {args.out}/executable.json")
  elif args.protocol == "quality":
    from pnag_jax.evaluation import quality
    report = quality.run(args.workdir, args.out, data_dir=args.data_dir, num=args.num,
                         seeds=tuple(range(args.seeds)))
    print(quality.format_table(report))
    print(f"\nwrote {args.out}/quality.json, quality.md, quality.png")


def _add_eval(sub) -> None:
  p = sub.add_parser("eval", help="the paper's evaluation protocols (JSON + PNG under --out)")
  proto = p.add_subparsers(dest="protocol", required=True, parser_class=_OneLineParser)
  v = proto.add_parser("vun", help="validity / uniqueness / novelty (paper Table 6)")
  v.add_argument("--run", action="append", default=[], metavar="SPACE=WORKDIR",
                 help="a trained stage-1 run; repeatable, one per space")
  v.add_argument("--space", action="append", default=[],
                 help="a space with the random baseline only; repeatable")
  v.add_argument("--num", type=int, default=1000)
  v.add_argument("--seeds", type=int, default=3)
  s = proto.add_parser("speed", help="generation throughput and batch-1 latency")
  s.add_argument("--workdir", required=True)
  s.add_argument("--max-log2", type=int, default=20, help="largest batch is 2**this")
  a = proto.add_parser("scc-ablation", help="validity and quality against SCC t_max (Fig. 3)")
  a.add_argument("--space", default="nb201", choices=["nb201", "mbv3"])
  a.add_argument("--seeds", type=int, default=2)
  a.add_argument("--t-max", type=int, nargs="*", default=None, help="default: 0..T")
  a.add_argument("--num", type=int, default=1000)
  a.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="override the reduced training budget")
  q = proto.add_parser("quality", help="NB201 accuracy of generated vs random (Fig. 4b/c)")
  q.add_argument("--workdir", required=True)
  q.add_argument("--num", type=int, default=100)
  q.add_argument("--seeds", type=int, default=1)
  e = proto.add_parser("executable", help="build, run and step each arch's network")
  e.add_argument("--workdir", help="a trained stage-1 run: generated archs and every g_t")
  e.add_argument("--from-file", help="F.jsonl with one {\"arch\": ...} per line (needs --space)")
  e.add_argument("--random", action="store_true", help="uniform samples of --space")
  e.add_argument("--space", help="the space of --from-file / --random")
  e.add_argument("--num", type=int, default=100)
  e.add_argument("--seed", type=int, default=0)
  e.add_argument("--full-size", action="store_true",
                 help="check the paper-sized networks (default: reduced macro size)")
  e.add_argument("--jit", action="store_true",
                 help="check each network's compiled step (default: op by op, which "
                      "reuses compiles across architectures)")
  e.add_argument("--constrained", action="store_true",
                 help="with --workdir: decode the archs and every g_t under the grammar")
  for sp in (v, s, a, q, e):
    sp.add_argument("--out", required=True, help="output directory")
  for sp in (a, q):
    sp.add_argument("--data-dir", help="directory holding nb201/ (default: $PNAG_DATA_DIR)")
  p.set_defaults(func=_cmd_eval)


def _cmd_train_arch(args: argparse.Namespace) -> None:
  from pnag_jax.arch_training.train import ArchTrainConfig, train_arch  # pylint: disable=g-import-not-at-top
  from pnag_jax.spaces import get_space  # pylint: disable=g-import-not-at-top
  get_space(args.space)
  cfg = ArchTrainConfig(space=args.space, arch=args.arch, dataset=args.dataset,
                        epochs=args.epochs, batch_size=args.batch_size,
                        learning_rate=args.lr, seed=args.seed)
  r = train_arch(cfg, args.workdir)
  print(f"{r['space']} on {r['dataset']}: test accuracy {100 * r['test_accuracy']:.2f}% after "
        f"{r['epochs']} epochs ({r['train_seconds']:.1f} s); {r['params']:,} params, "
        f"{r['flops_per_example'] / 1e6:.1f} MFLOPs/example")
  print(f"  report: {args.workdir}/report.json")


def _add_train_arch(sub) -> None:
  p = sub.add_parser("train-arch", help="train one architecture on real data")
  p.add_argument("--space", required=True)
  p.add_argument("--arch", required=True, help="the native architecture string")
  p.add_argument("--dataset", default="digits", help="digits | npz:PATH | cifar10:DIR")
  p.add_argument("--epochs", type=int, default=30)
  p.add_argument("--batch-size", type=int, default=64)
  p.add_argument("--lr", type=float, default=0.05)
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--workdir", required=True)
  p.set_defaults(func=_cmd_train_arch)


def _add_train(sub) -> None:
  p = sub.add_parser("train", help="train a stage (resumes from the latest checkpoint)")
  p.add_argument("stage", choices=["stage1"])
  p.add_argument("--space", default="nb201")
  p.add_argument("--workdir", required=True)
  p.add_argument("--preset", default="quick", help="quick | paper")
  p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="override one config value; repeatable")
  p.add_argument("--data-dir", help="directory holding nb201/ (default: $PNAG_DATA_DIR)")
  p.add_argument("--seed", type=int, default=0)
  p.set_defaults(func=_cmd_train)


def _add_spaces(sub) -> None:
  p = sub.add_parser("spaces", help="list the search spaces: N, vocabulary, size")
  p.add_argument("space", nargs="?", help="only this space")
  p.set_defaults(func=_cmd_spaces)


def _add_demo(sub) -> None:
  p = sub.add_parser("demo", help="the main job on NB201: train, generate, report (minutes)")
  p.add_argument("--workdir", help="where the stage-1 run goes (default: a fresh temp dir)")
  p.add_argument("--num", type=int, default=100_000, help="architectures to generate")
  p.add_argument("--seed", type=int, default=0)
  p.add_argument("--data-dir", help="directory holding nb201/ (default: $PNAG_DATA_DIR)")
  p.set_defaults(func=_cmd_demo)


_COMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    _add_spaces, _add_demo, _add_train, _add_generate, _add_eval,
    _add_train_arch)


def build_parser() -> argparse.ArgumentParser:
  parser = _OneLineParser(prog="pnag", description=__doc__.splitlines()[0])
  sub = parser.add_subparsers(dest="command", required=True, parser_class=_OneLineParser)
  for add in _COMMANDS:
    add(sub)
  return parser


def main(argv: Sequence[str] | None = None) -> int:
  args = build_parser().parse_args(argv)
  try:
    args.func(args)
  except PnagError as e:
    print(f"pnag: error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print("pnag: interrupted", file=sys.stderr)
    return 130
  return 0


if __name__ == "__main__":
  sys.exit(main())
