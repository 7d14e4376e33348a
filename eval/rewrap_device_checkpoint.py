"""A stage-2 (or surrogate) step from eval/stage2_device.sh, made a checkpoint again.

  python eval/rewrap_device_checkpoint.py RUN.tgz WORKDIR

The device returns each run's latest step without its optimizer state (the tool brings
back 8 files of at most 16 MiB). This writes WORKDIR/<stage> with the same params, rng
and meta (so lineage checks and the params' sha256 hold) and a fresh optimizer state:
it loads for sampling and evaluation exactly as trained; a resume would restart Adam's
moments. A stage 1 in the archive (trained there) is moved in as it came.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tarfile
from pathlib import Path

import jax
import orbax.checkpoint as ocp

from pnag_jax import checkpoint as ckpt_lib
from pnag_jax import config as config_lib
from pnag_jax.stages import stage2
from pnag_jax.stages import surrogate
from pnag_jax.training import stage2 as stage2_trainer
from pnag_jax.training import surrogate as surrogate_trainer

CONFIGS = {"stage2": (stage2.Stage2Config, stage2_trainer),
           "surrogate": (surrogate.SurrogateConfig, surrogate_trainer)}


def restore_on_host(checkpoints: Path, step: int) -> dict:
  """params, rng and meta of a step saved on a GPU, onto this host's first device."""
  mngr = ocp.CheckpointManager(checkpoints.absolute(), item_handlers={
      "params": ocp.StandardCheckpointHandler(), "rng": ocp.StandardCheckpointHandler(),
      "meta": ocp.JsonCheckpointHandler()})
  # Without targets orbax would place arrays on the saving device (cuda:0).
  here = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  saved = mngr.item_metadata(step)
  target = lambda name: jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=here), saved[name].tree)
  return mngr.restore(step, args=ocp.args.Composite(
      params=ocp.args.StandardRestore(target("params")),
      rng=ocp.args.StandardRestore(target("rng")), meta=ocp.args.JsonRestore()))


def _rewrap_step(checkpoints: Path, workdir: Path, name: str, stage: str, cfg) -> int:
  """Saves the one step in `checkpoints` as `workdir/<name>`'s, with a fresh optimizer."""
  _, trainer = CONFIGS[stage]
  (step,) = [int(p.name) for p in checkpoints.iterdir() if p.name.isdigit()]
  got = restore_on_host(checkpoints, step)
  params = got["params"]
  opt_state = trainer.make_optimizer(trainer.OptimizerSettings.of(cfg, step)).init(params)
  if stage == "surrogate":  # its opt_state item also holds the raw (non-EMA) params
    opt_state = {"opt": opt_state, "params": params}
  with ckpt_lib.StageCheckpointer(workdir, name) as ckpt:
    ckpt.save(step, params, opt_state, jax.random.wrap_key_data(got["rng"]["key_data"]),
              got["meta"], force=True)
    ckpt.wait_until_finished()
  return step


def rewrap(src: Path, workdir: Path) -> str:
  """Writes workdir/<src.name> from the returned stage dir `src`; returns a summary."""
  stage = src.name
  config_cls, _ = CONFIGS[stage]
  cfg = config_lib.from_dict(config_cls, json.loads((src / "config.json").read_text()),
                             where=str(src))
  out = workdir / stage
  shutil.rmtree(out, ignore_errors=True)
  step = _rewrap_step(src / "checkpoints", workdir, stage, stage, cfg)
  best = ""
  if (src / "best" / "checkpoints").is_dir():  # stage 2's best held-out step
    best = f", best held-out step {_rewrap_step(src / 'best' / 'checkpoints', workdir, stage2.BEST, stage, cfg)}"
  for name in ("config.json", "metrics.jsonl", "report.json"):
    if (src / name).is_file():
      shutil.copy(src / name, out / name)
  done = "with" if (out / "report.json").is_file() else "without"
  return f"{out}: step {step}{best}, {done} report.json"


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  p.add_argument("archive", type=Path, help="a .tgz from eval/stage2_device.sh")
  p.add_argument("workdir", type=Path)
  args = p.parse_args()
  incoming = args.workdir / "_incoming"
  shutil.rmtree(incoming, ignore_errors=True)
  with tarfile.open(args.archive) as tf:
    tf.extractall(incoming, filter="data")
  if (incoming / "stage1").is_dir() and not (args.workdir / "stage1").exists():
    shutil.move(incoming / "stage1", args.workdir / "stage1")
    print(f"{args.workdir / 'stage1'}: moved in")
  for src in sorted(incoming.iterdir()):
    if src.name in CONFIGS:
      print(rewrap(src, args.workdir))
  shutil.rmtree(incoming)


if __name__ == "__main__":
  main()
