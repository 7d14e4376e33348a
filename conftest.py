"""Test-wide setup and the fixtures shared by the whole suite.

8 fake CPU devices, so sharding code runs as on a real mesh: this must run before JAX
initialises its backend, hence the root conftest. XLA compiles without LLVM
optimisation and with its elemental (not the newer MLIR) fusion emitters: nearly every
test compiles far more than it runs, the two together more than halve XLA:CPU's
compile times, and no test times anything. The one long training run, `trained_run`, is
a subprocess compiled as users compile it.

`trained_run` is the one trained model of the suite: the main job, `pnag demo`, run
once, its quick preset cut to 120 steps by `--steps` (held-out reconstruction is exact
by step 100; the suite checks the job, not the preset's length). Every test that asks
for it is put in one xdist group (`--dist loadgroup`), so one worker trains it once
while the other workers run the rest of the suite; tests that need exact algebra, not quality, use the untrained
models of `untrained_run` instead. `nb201_surrogate` and `nb201_stage2`, the suite's
surrogate and stage-2 runs, each get a group of their own likewise. Every other test
goes in its module's group (`pytest_collection_modifyitems`).
"""

import os

_DEVICES = "--xla_force_host_platform_device_count=8"
_FAST_COMPILE = ("--xla_backend_optimization_level=0 --xla_llvm_disable_expensive_passes=true "
                 "--xla_cpu_use_fusion_emitters=false")
# One compute thread per process: the xdist workers already fill the cores, and
# threads of two processes contending for them cost more than they give.
_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false"
os.environ.setdefault("XLA_FLAGS", f"{_DEVICES} {_FAST_COMPILE} {_ONE_THREAD}")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One XLA compilation cache for the session: the pytest process sets it before the
# xdist workers start, and they and every subprocess (`pnag ...`, the runtime's
# processes) inherit it, so a program compiled once (the same HLO, flags and devices)
# is read back, not compiled again. A fresh directory per session: no state between
# runs.
# The process that made it removes it at the end (`pytest_unconfigure`).
_OWN_CACHE = None
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
  import tempfile  # pylint: disable=g-import-not-at-top
  _OWN_CACHE = tempfile.mkdtemp(prefix="pnag-xla-cache-")
  os.environ["JAX_COMPILATION_CACHE_DIR"] = _OWN_CACHE
  os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")


import csv  # pylint: disable=g-import-not-at-top,wrong-import-position
import subprocess  # pylint: disable=g-import-not-at-top,wrong-import-position
import sys  # pylint: disable=g-import-not-at-top,wrong-import-position
from pathlib import Path  # pylint: disable=g-import-not-at-top,wrong-import-position

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

TRAINED_GROUP = "trained_run"
SURROGATE_GROUP = "nb201_surrogate"
STAGE2_GROUP = "nb201_stage2"


def _pnag(*args, env=None, timeout=600) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "pnag_jax.cli", *map(str, args)],
                        capture_output=True, text=True, env={**os.environ, **(env or {})},
                        timeout=timeout, check=False)


#: The groups of the suite's shared runs, longest first (see `pytest_collection_modifyitems`).
_SHARED_GROUPS = (TRAINED_GROUP, STAGE2_GROUP, SURROGATE_GROUP)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
  """Puts every test in an xdist group, and the shared runs' groups first.

  A test that asks for a shared run goes in its group (so the run is made once), as
  do the modules that name a group themselves. Every other test goes in its module's
  group: a module's tests share its fixtures and the programs and eager-op kernels its
  first test compiled, where test-by-test distribution made both workers compile them
  alike (the suite is CPU-bound; this took a sixth off its wall time on 2 cores). The
  shared runs' groups are the longest units, so they are scheduled first and the
  small module groups fill in around them.
  """
  del config
  for item in items:
    if item.get_closest_marker("xdist_group") is not None:
      continue
    names = getattr(item, "fixturenames", ())
    group = next((g for g in _SHARED_GROUPS if g in names), item.nodeid.split("::")[0])
    item.add_marker(pytest.mark.xdist_group(group))

  def rank(item):
    group = item.get_closest_marker("xdist_group").args[0]
    return _SHARED_GROUPS.index(group) if group in _SHARED_GROUPS else len(_SHARED_GROUPS)

  items.sort(key=rank)  # stable: collection order within a rank


def pytest_unconfigure(config):
  del config
  if _OWN_CACHE is not None:
    import shutil  # pylint: disable=g-import-not-at-top
    shutil.rmtree(_OWN_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def data_dir() -> Path:
  """`$PNAG_DATA_DIR` (CI: ../shared/data); tests that need it fail loudly without it."""
  d = os.environ.get("PNAG_DATA_DIR")
  if not d:
    pytest.fail("PNAG_DATA_DIR is not set; point it at a directory holding nb201/")
  return Path(d)


@pytest.fixture(scope="session")
def nb201_rows(data_dir):
  with open(data_dir / "nb201" / "nb201_accuracy.csv", newline="") as f:
    return list(csv.DictReader(f))


@pytest.fixture(scope="session")
def one_device_env():
  """The environment of a subprocess that sees one CPU device, compiled as the suite
  compiles (this conftest's other XLA flags)."""
  return {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": os.environ["XLA_FLAGS"].replace(
      _DEVICES, "--xla_force_host_platform_device_count=1")}


@pytest.fixture(scope="session")
def pnag():
  """`pnag(*args, env=None)`: the `pnag` console command, run as users run it."""
  return _pnag


@pytest.fixture
def pnag_main(capsys):
  """`pnag_main(*args) -> (exit code, stdout, stderr)`: the CLI's `main` in this process.

  The same code path as the console command (argument parsing, the one-line error
  boundary) without paying for a new interpreter and JAX import per call.
  """
  from pnag_jax import cli  # pylint: disable=g-import-not-at-top

  def run(*args):
    capsys.readouterr()
    try:
      code = cli.main([str(a) for a in args])
    except SystemExit as e:  # argparse's own errors and --help
      code = e.code
    out = capsys.readouterr()
    return code, out.out, out.err

  return run


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, data_dir):
  """(workdir, stdout) of `pnag demo --num 5000 --steps 120`: NB201, trained once."""
  workdir = tmp_path_factory.mktemp("trained") / "demo_nb201"
  r = _pnag("demo", "--num", "5000", "--steps", "120", "--workdir", workdir,
           env={"PNAG_DATA_DIR": str(data_dir),
                "XLA_FLAGS": os.environ["XLA_FLAGS"].replace(_FAST_COMPILE, "")})
  assert r.returncode == 0, r.stderr[-3000:]
  return workdir, r.stdout


@pytest.fixture(scope="session")
def untrained_run():
  """`make(space="nb201", workdir=".", **overrides)`: an untrained stage-1 run (step 0).

  Enough for everything that is exact algebra or bookkeeping (fused vs unfused,
  determinism, sharding, sampling, file formats).
  """
  from pnag_jax.stages import stage1  # pylint: disable=g-import-not-at-top

  def make(space="nb201", workdir=Path("."), seed=0, **overrides):
    cfg = stage1.make_config("quick", space, seed, [f"{k}={v}" for k, v in overrides.items()])
    model, params = stage1.init(cfg)
    return stage1.Stage1Run(model, cfg, params, 0, Path(workdir), {})

  return make


@pytest.fixture(scope="session")
def nb201_untrained(untrained_run, tmp_path_factory):
  return untrained_run("nb201", tmp_path_factory.mktemp("nb201_untrained"))


@pytest.fixture(scope="session")
def nb201_untrained_priors(nb201_untrained):
  """Priors fitted on every 7th cell, saved where the run's samplers look for them."""
  from pnag_jax.generation import fitted  # pylint: disable=g-import-not-at-top
  priors = fitted.fit_priors(nb201_untrained, nb201_untrained.space.enumerate()[::7])
  fitted.save_priors(priors, fitted.priors_path(nb201_untrained))
  return priors


def save_stage1(run, workdir, step=0, opt_state=None, meta=None):
  """Writes `run`'s params as the stage-1 checkpoint of `workdir`, as the trainer does."""
  import jax  # pylint: disable=g-import-not-at-top
  from pnag_jax import atomic  # pylint: disable=g-import-not-at-top
  from pnag_jax import checkpoint as ckpt_lib  # pylint: disable=g-import-not-at-top
  from pnag_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from pnag_jax.stages import lineage  # pylint: disable=g-import-not-at-top
  workdir = Path(workdir)
  if meta is None:
    meta = lineage.stage_meta(stage="stage1", space=run.space.name,
                              config=config_lib.to_dict(run.cfg), params=run.params,
                              frozen=run.cfg.frozen())
  with ckpt_lib.StageCheckpointer(workdir, "stage1") as ckpt:
    if opt_state is None:  # orbax refuses an empty item; loading never reads this one
      opt_state = {"count": jax.numpy.zeros((), jax.numpy.int32)}
    ckpt.save(step, run.params, opt_state, jax.random.key(0), meta, force=True)
  # A finished run's final report: what stage 2 asks of the stage 1 it trains on.
  atomic.write_json(workdir / "stage1" / "report.json", {"steps": step})
  return workdir


@pytest.fixture(scope="session")
def nb201_workdir(nb201_untrained, nb201_untrained_priors, tmp_path_factory):
  """A workdir holding the untrained NB201 run as its stage-1 checkpoint (step 0), with
  the priors of `nb201_untrained_priors` beside it."""
  from pnag_jax.generation import fitted  # pylint: disable=g-import-not-at-top
  workdir = tmp_path_factory.mktemp("nb201_workdir")
  save_stage1(nb201_untrained, workdir)
  fitted.save_priors(nb201_untrained_priors, workdir / "stage1" / "priors" / "step_0.npz")
  return workdir


@pytest.fixture(scope="session")
def stage1_saver():
  """`save(run, workdir, step=0, opt_state=None, meta=None)`: see `save_stage1`."""
  return save_stage1


@pytest.fixture(scope="session")
def nb201_surrogate(tmp_path_factory, data_dir):
  """(workdir, report): `pnag train surrogate --preset test`, CIFAR-10 excluded.

  A subprocess, as users run it, compiled as the suite compiles (its 60 steps do not
  repay XLA's optimisations: 25 s against 28.5 s). Its tests form one xdist group, so
  it is trained once.
  """
  import json  # pylint: disable=g-import-not-at-top
  workdir = tmp_path_factory.mktemp("surrogate")
  r = _pnag("train", "surrogate", "--workdir", workdir, "--space", "nb201", "--preset", "test",
            "--exclude", "cifar10(?!0)", env={"PNAG_DATA_DIR": str(data_dir)})
  assert r.returncode == 0, r.stderr[-3000:]
  return workdir, json.loads((workdir / "surrogate" / "report.json").read_text())


class Stage2Recipe:
  """How `nb201_stage2` was made, for tests that train it again or beside it.

  An untrained narrow stage 1 (`STAGE1`), a tiny surrogate meta-trained on the
  synthetic `TASKS` without `lat_z`, then stage 2's `test` preset (12 steps)
  conditioned on the others through it.
  """
  STAGE1 = {"dim": 8, "encoder_layers": 1, "decoder_hidden": 32, "codebook_size": 16}
  TASKS = ("acc_a", "acc_b", "lat_x", "lat_z")
  EXCLUDE = ("lat_z",)
  SURROGATE = ("steps=4", "checkpoint_every=4", "episodes=2", "queries=8", "k_max=4",
               "num_val_tasks=1", "eval_ks=2", "eval_archs=16", "eval_repeats=1", "dim=8",
               "emb_dim=8", "hidden=8", "task_dim=8", "layers=1")
  STAGE2 = ("condition=task", "task_bank=2", "k_max=6", "eval_every=6")

  def __init__(self, synthetic_tasks):
    self._synthetic_tasks = synthetic_tasks

  def tasks(self, raising=()):
    return self._synthetic_tasks(self.TASKS, raising)

  def train_surrogate(self, workdir, seed=0):
    from pnag_jax.stages import surrogate  # pylint: disable=g-import-not-at-top
    from pnag_jax.training import surrogate as training  # pylint: disable=g-import-not-at-top
    cfg = surrogate.make_config("test", "nb201", seed, self.EXCLUDE, self.SURROGATE)
    return training.train_and_evaluate(cfg, workdir, tasks=self.tasks(), progress=False)

  def stage2_config(self):
    from pnag_jax.stages import stage2  # pylint: disable=g-import-not-at-top
    return stage2.make_config("test", overrides=self.STAGE2)

  def train_stage2(self, workdir, cfg=None, **kw):
    """Trains stage 2 on `workdir`; reading an excluded task fails the run."""
    from pnag_jax.training import stage2 as training  # pylint: disable=g-import-not-at-top
    return training.train_and_evaluate(cfg or self.stage2_config(), workdir,
                                       tasks=self.tasks(raising=self.EXCLUDE),
                                       progress=False, **kw)


@pytest.fixture(scope="session")
def stage2_recipe(synthetic_tasks):
  return Stage2Recipe(synthetic_tasks)


@pytest.fixture(scope="session")
def nb201_stage2(untrained_run, stage2_recipe, tmp_path_factory):
  """(workdir, report): the suite's one trained stage 2 (`Stage2Recipe`), on an untrained
  narrow stage 1 (`Stage2Recipe.STAGE1`; stage 2 first encodes all 15,625 cells with
  it) with fitted priors. Its tests form one xdist group."""
  from pnag_jax.generation import fitted  # pylint: disable=g-import-not-at-top
  workdir = tmp_path_factory.mktemp("stage2")
  run1 = untrained_run("nb201", workdir, **stage2_recipe.STAGE1)
  save_stage1(run1, workdir)
  fitted.save_priors(fitted.fit_priors(run1, run1.space.enumerate()[::7]),
                     fitted.priors_path(run1))
  stage2_recipe.train_surrogate(workdir)
  return workdir, stage2_recipe.train_stage2(workdir)


@pytest.fixture(scope="session")
def nb201_stage2_unconditional(nb201_workdir, tmp_path_factory):
  """A workdir whose stage 2 is unconditional and untrained (step 0): for what depends
  only on having no condition."""
  import shutil  # pylint: disable=g-import-not-at-top
  import jax  # pylint: disable=g-import-not-at-top
  from pnag_jax import checkpoint as ckpt_lib  # pylint: disable=g-import-not-at-top
  from pnag_jax import config as config_lib  # pylint: disable=g-import-not-at-top
  from pnag_jax.stages import lineage, stage1, stage2  # pylint: disable=g-import-not-at-top
  workdir = shutil.copytree(nb201_workdir, tmp_path_factory.mktemp("stage2_uncond") / "w")
  run1 = stage1.load(workdir)
  cfg = stage2.make_config("test")
  _, params = stage2.init(cfg, run1.model, stage2.condition_dim(cfg))
  meta = lineage.stage_meta(stage=stage2.NAME, space=run1.space.name,
                            config=config_lib.to_dict(cfg), params=params, frozen=cfg.frozen(),
                            parents=(lineage.parent_entry(stage1.NAME, run1.step, run1.params),))
  with ckpt_lib.StageCheckpointer(workdir, stage2.NAME) as ckpt:
    ckpt.save(0, params, {"count": jax.numpy.zeros((), jax.numpy.int32)}, jax.random.key(0),
              meta, force=True)
  return workdir


@pytest.fixture(scope="session")
def synthetic_tasks():
  """`make(names, raising=())`: NB201 tasks named `names`, each a seeded random linear
  score (no files); a name starting with `lat` is minimized, those in `raising` fail
  if read (so a test proves they never are)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from pnag_jax import tasks as tasks_lib  # pylint: disable=g-import-not-at-top
  from pnag_jax.spaces import get_space  # pylint: disable=g-import-not-at-top
  genes = get_space("nb201").enumerate()
  onehot = np.eye(5)[genes].reshape(len(genes), -1)

  def make(names, raising=()):
    out = {}
    for i, name in enumerate(names):
      w = np.random.default_rng(i).normal(size=onehot.shape[1])

      def load(w=w, name=name):
        if name in raising:
          raise AssertionError(f"excluded task {name} was read")
        return tasks_lib.TaskData(genes, onehot @ w)

      out[name] = tasks_lib.Task(name, "synthetic", name.startswith("lat"), "nb201", "test",
                                 load)
    return out

  return make
