"""Memory of one stage-2 training step, whole and in micro-batches.

  python eval/bench_stage2_memory.py --stage1 runs/mbv3 runs/darts runs/nb201 \
      --batch 256 --micro-batches 1 4 --out eval/reports/stage2/memory

XLA's own accounting of the compiled `train_step` (`memory_analysis()`): the buffers
it allocates beside its arguments and outputs (`temp_bytes`), at the `paper` preset's
model on each stage 1's token maps, unconditional. Nothing is run, so it needs no
accelerator; the figures are the CPU backend's, and a GPU build fuses differently
but keeps the same activations alive for the backward pass.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import jax
import jax.numpy as jnp

from pnag_jax import atomic
from pnag_jax.evaluation import reports
from pnag_jax.stages import stage1
from pnag_jax.stages import stage2
from pnag_jax.training import stage2 as trainer


def step_memory(workdir: str, batch: int, micro_batches: int) -> dict:
  run1 = stage1.load(workdir)
  cfg = stage2.make_config("paper").replace(micro_batches=micro_batches, batch_size=batch)
  model = stage2.static_model(cfg, run1.model, 0)
  opt = trainer.OptimizerSettings.of(cfg, total_steps=1000)

  def fresh_state():
    params = stage2.init(cfg, run1.model, 0)[1]
    return {"params": params, "opt_state": trainer.make_optimizer(opt).init(params)}

  state = jax.eval_shape(fresh_state)
  p = model.layout.num_tokens
  args = (state, jax.ShapeDtypeStruct((batch, p), jnp.int32),
          jax.ShapeDtypeStruct((batch,), jnp.int32),
          jax.ShapeDtypeStruct(run1.params["codebook"].shape, jnp.float32), {},
          jax.eval_shape(lambda: jax.random.key(0)), jax.ShapeDtypeStruct((), jnp.int32))
  compiled = trainer.train_step.lower(*args, model=model, opt=opt, cond_drop=cfg.cond_drop,
                                      micro_batches=micro_batches).compile()
  mem = compiled.memory_analysis()
  return {"space": run1.space.name, "tokens": p, "batch": batch,
          "micro_batches": micro_batches,
          "temp_bytes": int(mem.temp_size_in_bytes),
          "argument_bytes": int(mem.argument_size_in_bytes),
          "output_bytes": int(mem.output_size_in_bytes)}


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("--stage1", nargs="+", required=True, help="workdirs holding stage1/")
  p.add_argument("--batch", type=int, default=256)
  p.add_argument("--micro-batches", type=int, nargs="+", default=[1, 4])
  p.add_argument("--out", required=True, help="output directory (memory.json, memory.md)")
  args = p.parse_args()
  rows = [step_memory(w, args.batch, m) for w in args.stage1 for m in args.micro_batches]
  out = Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  atomic.write_json(out / "memory.json",
                    {"rows": rows, "preset": "paper", "machine": reports.machine()})
  gib = lambda b: f"{b / 2**30:.2f}"
  lines = ["| space | tokens | batch | micro-batches | temporaries GiB | arguments GiB |",
           "|---|---:|---:|---|---:|---:|"]
  lines += [f"| {r['space']} | {r['tokens']} | {r['batch']} | {r['micro_batches']} | "
            f"{gib(r['temp_bytes'])} | {gib(r['argument_bytes'])} |" for r in rows]
  atomic.write_text(out / "memory.md", "\n".join(lines) + "\n")
  print("\n".join(lines))


if __name__ == "__main__":
  main()
