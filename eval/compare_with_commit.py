"""Shows that the working tree behaves exactly like a base commit, side by side.

  PNAG_DATA_DIR=../shared/data .venv/bin/python eval/compare_with_commit.py \
      --base 497a97c --out eval/reports/compare_497a97c

The base commit's source is unpacked with `git archive` into a temp dir. The old side runs
`PYTHONPATH=<that dir> python -m pnag_jax.cli ...` and the new side
`PYTHONPATH=<repo root, or --new-src> python -m pnag_jax.cli ...`, in this interpreter's
environment. Both run from a neutral directory with PYTHONSAFEPATH=1, and at the start each
side is checked to import `pnag_jax` from its own directory. The CLI is started through a
short bootstrap (runpy, as `-m` does) that drops the editable install's import hook: that
hook would otherwise supply, silently and from the repo root, any `pnag_jax` module missing
from a side's tree. Any command that loaded a `pnag_jax` module from outside its side's
tree fails.

The stage-1 run is `--workdir W` if given. Otherwise the base commit trains one into
`<out>/run` (`pnag train stage1 --space nb201 --preset quick`), which also shows that its
workdirs still load with the new code. `<out>/run` is deleted at the end unless `--keep-run`.
Each side works on its own copy of the run, made before either side generates anything and
without `stage1/priors/`, so each side fits and caches its own priors.

The checks:
- `pnag generate --num N --seed 0 --prior P --out F`, for every prior and both `.csv` and
  `.jsonl`, plus codes with `--constrained` and fitted with `--temperature 0.5`. The two
  sides' files must be byte-identical (sha256 and size) and carry the NB201 columns.
- Each side's cached priors, `stage1/priors/step_*.npz`: the same files, and equal arrays
  for every key.
- `pnag eval vun --num 1000 --seeds 3`: every row's mean, std and per-seed numbers must be
  identical. Fields that describe the machine or paths (`machine`, `workdir`) are ignored.
- `pnag eval speed --max-log2 K`, alternated old/new, new/old, ... for R rounds. The new
  side's best `codes+fused` archs/s must be at least 0.9x the old side's.

Writes `<out>/compare.json` and `<out>/compare.md`. Paths in them are relative to the repo
root, or are placeholders. Prints one line per check, and exits 0 only if every check
passes.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]

#: (case name, prior, suffix, extra `pnag generate` flags).
GENERATE_CASES = (
    ("codes.csv", "codes", ".csv", ()),
    ("codes.jsonl", "codes", ".jsonl", ()),
    ("fitted.csv", "fitted", ".csv", ()),
    ("fitted.jsonl", "fitted", ".jsonl", ()),
    ("latent.csv", "latent", ".csv", ()),
    ("latent.jsonl", "latent", ".jsonl", ()),
    ("codes+constrained.jsonl", "codes", ".jsonl", ("--constrained",)),
    ("fitted+temperature0.5.csv", "fitted", ".csv", ("--temperature", "0.5")),
)

#: Report fields that describe the machine or paths, not behaviour.
IGNORED_FIELDS = ("machine", "workdir")

SPEED_PATH = "codes+fused"


#: Runs `python -m pnag_jax.cli ARGS` (via runpy, as -m does) with two guards. It drops the
#: editable install's import hook, which sits after PYTHONPATH but would silently supply,
#: from the repo root, any pnag_jax module missing from this side's tree. At exit it fails
#: (status 3) if any loaded pnag_jax module lies outside this side's tree.
BOOTSTRAP = """
import os, runpy, sys
src = os.path.realpath(os.environ["PNAG_COMPARE_SRC"]) + os.sep
sys.meta_path[:] = [f for f in sys.meta_path
                    if not getattr(f, "__module__", "").startswith("__editable___pnag_jax")]
def check():
  bad = sorted(os.path.realpath(m.__file__) for n, m in list(sys.modules.items())
               if n.split(".")[0] == "pnag_jax" and getattr(m, "__file__", None)
               and not os.path.realpath(m.__file__).startswith(src))
  if bad:
    sys.stdout.flush()
    print("compare_with_commit: pnag_jax modules from outside " + src + ": " + ", ".join(bad),
          file=sys.stderr, flush=True)
    os._exit(3)
if sys.argv[1:] == ["--where"]:
  import pnag_jax
  check()
  print(pnag_jax.__file__)
  sys.exit(0)
try:
  runpy.run_module("pnag_jax.cli", run_name="__main__", alter_sys=True)
finally:
  check()
"""


class CommandFailed(RuntimeError):
  pass


class Side:
  """One version of the code: its source directory and how to run its CLI."""

  def __init__(self, name: str, src: Path, cwd: Path, logs: Path, data_dir: str | None,
               timeout: float, clock):
    self.name, self.src, self.cwd, self.logs = name, src, cwd, logs
    self.timeout, self.clock = timeout, clock
    env = dict(os.environ)
    env["PYTHONPATH"] = str(src)  # replaces any inherited PYTHONPATH
    env["PYTHONSAFEPATH"] = "1"  # no cwd / script dir in front of PYTHONPATH
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # leave no __pycache__ in the source trees
    env["PNAG_COMPARE_SRC"] = str(src)
    if data_dir:
      env["PNAG_DATA_DIR"] = data_dir
    self.env = env
    self._n = 0

  def python(self, args: list[str], label: str) -> str:
    """Runs `python ARGS` with this side's PYTHONPATH; returns stdout, raises on failure."""
    self._n += 1
    log = self.logs / f"{self._n:02d}_{self.name}_{label.replace('/', '_')}.log"
    print(f"[{self.clock():7.1f} s] {self.name}: {label}", flush=True)
    t0 = time.perf_counter()
    try:
      r = subprocess.run([sys.executable, *args], cwd=self.cwd, env=self.env,
                         capture_output=True, text=True, timeout=self.timeout, check=False)
    except subprocess.TimeoutExpired as e:
      raise CommandFailed(f"{self.name}: {label} ran past {self.timeout:g} s") from e
    shown = " ".join("<bootstrap>" if a == BOOTSTRAP else a for a in args)
    log.write_text(f"$ python {shown}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}")
    if r.returncode != 0:
      tail = (r.stderr.strip() or r.stdout.strip())[-1500:]
      raise CommandFailed(f"{self.name}: {label} exited {r.returncode}: {tail}")
    print(f"[{self.clock():7.1f} s] {self.name}: {label} done in "
          f"{time.perf_counter() - t0:.1f} s", flush=True)
    return r.stdout

  def pnag(self, args: list[str], label: str) -> str:
    """`python -m pnag_jax.cli ARGS`, guarded by BOOTSTRAP."""
    return self.python(["-c", BOOTSTRAP, *args], label)

  def check_import(self) -> str:
    out = self.python(["-c", BOOTSTRAP, "--where"], "import check")
    got = Path(out.strip().splitlines()[-1]).resolve()
    want = (self.src / "pnag_jax" / "__init__.py").resolve()
    if got != want:
      raise CommandFailed(f"{self.name} side imports pnag_jax from {got}, not from {want}: "
                          "something on sys.path shadows PYTHONPATH")
    return str(got)


def git(*args: str) -> str:
  return subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True,
                        check=True).stdout.strip()


def materialise(commit: str, dest: Path) -> None:
  """The commit's tracked files in `dest`, via `git archive` (no worktree registration)."""
  dest.mkdir(parents=True)
  tar = dest.parent / f"{dest.name}.tar"
  git("archive", "--format=tar", "-o", str(tar), commit)
  subprocess.run(["tar", "-xf", str(tar), "-C", str(dest)], check=True)
  tar.unlink()


def copy_run(src: Path, dst: Path) -> bool:
  """Copies a stage-1 workdir without its cached priors; True if there were any."""
  had = (src / "stage1" / "priors").exists()
  shutil.copytree(src, dst, ignore=lambda d, names: (
      ["priors"] if Path(d).name == "stage1" and Path(d).parent == src else []))
  return had


def file_facts(path: Path) -> dict:
  h = hashlib.sha256()
  rows, first = 0, None
  with path.open("rb") as f:
    for line in f:
      h.update(line)
      rows += 1
      if first is None:
        first = line
  first_text = (first or b"").decode("utf-8", "replace")
  return {"sha256": h.hexdigest(), "bytes": path.stat().st_size, "lines": rows,
          "nb201_columns": "nb201_index" in first_text}


def compare_generated(old: dict, new: dict) -> tuple[bool, str]:
  same = old["sha256"] == new["sha256"] and old["bytes"] == new["bytes"]
  if not same:
    return False, "files differ"
  if not (old["nb201_columns"] and new["nb201_columns"]):
    return False, "identical, but without the NB201 columns"
  return True, "identical"


def _priors_files(d: Path) -> list[str]:
  """`step_<N>.npz` names (not a killed write's `step_<N>.tmp<pid>-<token>.npz`)."""
  if not d.is_dir():
    return []
  return sorted(p.name for p in d.glob("step_*.npz") if p.stem[5:].isdigit())


def compare_priors(old_dir: Path, new_dir: Path) -> dict:
  old_files, new_files = _priors_files(old_dir), _priors_files(new_dir)
  out = {"old_files": old_files, "new_files": new_files, "arrays": {}, "differing": []}
  if not old_files or old_files != new_files:
    out["pass"], out["detail"] = False, "different or missing priors files"
    return out
  for name in old_files:
    with np.load(old_dir / name, allow_pickle=False) as a, \
         np.load(new_dir / name, allow_pickle=False) as b:
      if sorted(a.files) != sorted(b.files):
        out["differing"].append(f"{name}: keys {sorted(a.files)} vs {sorted(b.files)}")
        continue
      for key in sorted(a.files):
        x, y = a[key], b[key]
        out["arrays"][f"{name}:{key}"] = {"dtype": str(x.dtype), "shape": list(x.shape)}
        same = x.dtype == y.dtype and x.shape == y.shape and np.array_equal(
            x, y, equal_nan=x.dtype.kind in "fc")
        if not same:
          out["differing"].append(f"{name}:{key}")
  out["pass"] = not out["differing"]
  out["detail"] = (f"{len(out['arrays'])} arrays identical" if out["pass"]
                   else f"{len(out['differing'])} differ")
  return out


def strip_fields(obj):
  if isinstance(obj, dict):
    return {k: strip_fields(v) for k, v in obj.items() if k not in IGNORED_FIELDS}
  if isinstance(obj, list):
    return [strip_fields(v) for v in obj]
  return obj


def canon(obj) -> str:
  """Exact: JSON floats round-trip, and NaN equals NaN here."""
  return json.dumps(obj, sort_keys=True)


def json_diffs(a, b, path: str = "", limit: int = 20) -> list[str]:
  """Paths where two JSON values differ (at most `limit`)."""
  out: list[str] = []
  if isinstance(a, dict) and isinstance(b, dict):
    for k in sorted(set(a) | set(b)):
      if k not in a or k not in b:
        out.append(f"{path}/{k}: only in {'new' if k in b else 'old'}")
      else:
        out += json_diffs(a[k], b[k], f"{path}/{k}", limit)
      if len(out) >= limit:
        break
  elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
    for i, (x, y) in enumerate(zip(a, b)):
      out += json_diffs(x, y, f"{path}/{i}", limit)
      if len(out) >= limit:
        break
  elif canon(a) != canon(b):
    out.append(f"{path}: {a!r} vs {b!r}")
  return out[:limit]


def compare_vun(old: dict, new: dict) -> dict:
  old_s, new_s = strip_fields(old), strip_fields(new)
  rows = []
  for space in sorted(set(old_s.get("spaces", {})) | set(new_s.get("spaces", {}))):
    o_rows = old_s.get("spaces", {}).get(space, {}).get("rows", {})
    n_rows = new_s.get("spaces", {}).get(space, {}).get("rows", {})
    for label in list(dict.fromkeys([*o_rows, *n_rows])):
      same = label in o_rows and label in n_rows and canon(o_rows[label]) == canon(n_rows[label])
      means = {c: v["mean"] for c, v in n_rows.get(label, {}).items()
               if isinstance(v, dict) and "mean" in v}
      rows.append({"space": space, "row": label, "pass": same, "new_means": means})
  diffs = json_diffs(old_s, new_s)
  return {"rows": rows, "differences": diffs, "pass": bool(rows) and not diffs and
          all(r["pass"] for r in rows),
          "detail": (f"{len(rows)} rows identical" if not diffs
                     else f"{len(diffs)} differing fields")}


class Redactor:
  """Replaces this machine's absolute paths with repo-relative paths or placeholders."""

  def __init__(self, pairs: list[tuple[Path | str | None, str]]):
    self.pairs = sorted(((str(Path(p).resolve()), r) for p, r in pairs if p),
                        key=lambda pr: -len(pr[0]))

  def text(self, s: str) -> str:
    for path, repl in self.pairs:
      if repl == ".":
        s = s.replace(path + "/", "")
      s = s.replace(path, repl)
    return s

  def __call__(self, obj):
    if isinstance(obj, dict):
      return {self.text(str(k)): self(v) for k, v in obj.items()}
    if isinstance(obj, list):
      return [self(v) for v in obj]
    if isinstance(obj, str):
      return self.text(obj)
    return obj


def machine_info() -> dict:
  try:
    jax_version = importlib.metadata.version("jax")
  except importlib.metadata.PackageNotFoundError:
    jax_version = None
  return {"cpu_count": os.cpu_count(), "platform": platform.platform(),
          "python": platform.python_version(), "jax": jax_version}


def _short(sha: str | None) -> str:
  return (sha or "-")[:12]


def write_markdown(report: dict, path: Path) -> None:
  lines = [
      f"# Behaviour check: base {_short(report['base']['commit'])} vs new "
      f"{_short(report['new']['commit'])}{' (dirty tree)' if report['new']['dirty'] else ''}",
      "",
      f"Run: {report['workdir']['label']}. Machine: {report['machine']['cpu_count']} CPUs, "
      f"{report['machine']['platform']}, jax {report['machine']['jax']}. "
      f"Wall time {report['wall_seconds']:.0f} s. "
      f"**{'All checks pass' if report['all_pass'] else 'Some checks FAIL'}.**",
      "",
      "| check | base | new | result |",
      "|---|---|---|---|",
  ]
  for c in report["checks"]:
    lines.append(f"| {c['name']} | {c.get('old_figure', '-')} | {c.get('new_figure', '-')} | "
                 f"{'pass' if c['pass'] else '**FAIL**'}: {c['detail']} |")
  speed = next((c for c in report["checks"] if c["kind"] == "speed"), None)
  if speed and speed.get("rounds"):
    lines += ["", f"Speed rounds ({SPEED_PATH}, best archs/s, in the order run):", ""]
    lines += ["| round | order | base | new |", "|---|---|---|---|"]
    for r in speed["rounds"]:
      lines.append(f"| {r['round']} | {' then '.join(r['order'])} | "
                   f"{r.get('old', float('nan')):,.0f} | {r.get('new', float('nan')):,.0f} |")
  path.write_text("\n".join(lines) + "\n")


def run_checks(args, old: Side, new: Side, tmp: Path, workdir: Path) -> list[dict]:
  """Every check on the two sides' copies of `workdir`; a failing command fails its check."""
  checks = []
  runs = {}
  had_priors = False
  for side in (old, new):
    runs[side.name] = tmp / f"run_{side.name}"
    had_priors |= copy_run(workdir, runs[side.name])
  if had_priors:
    print("  (the run's cached priors were left out of both copies: each side fits its own)")
  sides = {"old": old, "new": new}

  for i, (case, prior, suffix, extra) in enumerate(GENERATE_CASES):
    facts, error = {}, None
    for name in (("old", "new") if i % 2 == 0 else ("new", "old")):
      side = sides[name]
      out = tmp / f"gen_{name}" / f"archs_{case.replace('+', '_')}"  # ends in `suffix`
      out.parent.mkdir(exist_ok=True)
      try:
        side.pnag(["generate", "--workdir", str(runs[name]), "--num", str(args.num),
                   "--seed", "0", "--prior", prior, "--out", str(out), *extra],
                  f"generate {case}")
        facts[name] = file_facts(out)
        out.unlink()
      except CommandFailed as e:
        error = str(e)
    if error is None:
      ok, detail = compare_generated(facts["old"], facts["new"])
    else:
      ok, detail = False, error
    checks.append({
        "name": f"generate {case} (N={args.num:,}, seed 0)", "kind": "generate",
        "command": f"pnag generate --num {args.num} --seed 0 --prior {prior} "
                   f"{' '.join(extra)}{' ' if extra else ''}--out F{suffix}",
        "pass": ok, "detail": detail, "old": facts.get("old"), "new": facts.get("new"),
        "old_figure": (f"{facts['old']['sha256'][:12]} ({facts['old']['bytes']:,} B)"
                       if "old" in facts else "-"),
        "new_figure": (f"{facts['new']['sha256'][:12]} ({facts['new']['bytes']:,} B)"
                       if "new" in facts else "-")})

  pri = compare_priors(runs["old"] / "stage1" / "priors", runs["new"] / "stage1" / "priors")
  checks.append({"name": "fitted priors cache (stage1/priors/step_*.npz)", "kind": "priors",
                 "pass": pri["pass"], "detail": pri["detail"],
                 "old_figure": ", ".join(pri["old_files"]) or "-",
                 "new_figure": ", ".join(pri["new_files"]) or "-",
                 "arrays": pri["arrays"], "differing": pri["differing"]})

  reports, error = {}, None
  for name in ("old", "new"):
    out = tmp / f"vun_{name}"
    try:
      sides[name].pnag(["eval", "vun", "--run", f"nb201={runs[name]}", "--out", str(out),
                        "--num", str(args.vun_num), "--seeds", str(args.vun_seeds)], "eval vun")
      reports[name] = json.loads((out / "vun.json").read_text())
    except (CommandFailed, OSError, ValueError) as e:
      error = str(e)
  if error is None:
    v = compare_vun(reports["old"], reports["new"])
  else:
    v = {"rows": [], "differences": [], "pass": False, "detail": error}
  checks.append({"name": f"eval vun (nb201, {args.vun_num} archs x {args.vun_seeds} seeds)",
                 "kind": "vun", "pass": v["pass"], "detail": v["detail"],
                 "old_figure": f"{len(v['rows'])} rows", "new_figure": f"{len(v['rows'])} rows",
                 "ignored_fields": list(IGNORED_FIELDS), "rows": v["rows"],
                 "differences": v["differences"]})

  rounds, best, error = [], {"old": 0.0, "new": 0.0}, None
  for r in range(args.speed_rounds):
    order = ("old", "new") if r % 2 == 0 else ("new", "old")
    fig = {"round": r + 1, "order": list(order)}
    for name in order:
      out = tmp / f"speed_{name}_{r + 1}"
      try:
        sides[name].pnag(["eval", "speed", "--workdir", str(runs[name]), "--out", str(out),
                          "--max-log2", str(args.max_log2)], f"eval speed, round {r + 1}")
        rep = json.loads((out / "speed.json").read_text())
        fig[name] = float(rep["paths"][SPEED_PATH]["best_archs_per_s"])
        fig[f"{name}_best_batch"] = int(rep["paths"][SPEED_PATH]["best_batch"])
        best[name] = max(best[name], fig[name])
      except (CommandFailed, OSError, ValueError, KeyError) as e:
        error = str(e)
    rounds.append(fig)
  ratio = best["new"] / best["old"] if best["old"] > 0 else float("nan")
  ok = error is None and ratio >= args.speed_threshold
  checks.append({
      "name": f"eval speed {SPEED_PATH} best archs/s (max-log2 {args.max_log2}, "
              f"{args.speed_rounds} rounds)", "kind": "speed", "pass": ok,
      "detail": (f"new/old = {ratio:.3f} (needs >= {args.speed_threshold:g})" if error is None
                 else error),
      "old_figure": f"{best['old']:,.0f}", "new_figure": f"{best['new']:,.0f}",
      "best_old": best["old"], "best_new": best["new"], "ratio": ratio,
      "threshold": args.speed_threshold, "rounds": rounds})
  return checks


def compare(args) -> int:
  t_start = time.perf_counter()
  clock = lambda: time.perf_counter() - t_start
  out = Path(args.out).resolve()
  new_src = Path(args.new_src).resolve() if args.new_src else REPO
  data_dir = str(Path(args.data_dir).resolve()) if args.data_dir else None
  if data_dir is None or not Path(data_dir).is_dir():
    print(f"error: NB201 data directory {args.data_dir!r} not found: set PNAG_DATA_DIR or "
          "pass --data-dir", file=sys.stderr)
    return 2
  if not (new_src / "pnag_jax" / "__init__.py").is_file():
    print(f"error: --new-src {new_src} has no pnag_jax/ package", file=sys.stderr)
    return 2
  try:
    base_sha = git("rev-parse", "--verify", f"{args.base}^{{commit}}")
  except subprocess.CalledProcessError:
    print(f"error: {args.base!r} is not a commit of {REPO}", file=sys.stderr)
    return 2
  head_sha = git("rev-parse", "HEAD")
  dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
  out.mkdir(parents=True, exist_ok=True)
  tmp = Path(tempfile.mkdtemp(prefix="pnag_compare_"))
  trained_here = args.workdir is None
  workdir = (out / "run") if trained_here else Path(args.workdir).resolve()
  redact = Redactor([(tmp, "<tmp>"), (data_dir, "<data-dir>"),
                     (None if trained_here else workdir, "<workdir>"),
                     (None if new_src == REPO else new_src, "<new-src>"),
                     (None if out.is_relative_to(REPO) else out, "<out>"), (REPO, ".")])
  report = {
      "command": "python eval/compare_with_commit.py " + redact.text(" ".join(sys.argv[1:])),
      "base": {"given": args.base, "commit": base_sha, "source": "git archive of the commit"},
      "new": {"commit": head_sha, "dirty": dirty,
              "source": "the working tree" if new_src == REPO else "--new-src <new-src>"},
      "workdir": {"label": ("<out>/run, trained by the base commit (pnag train stage1 "
                            "--space nb201 --preset quick)") if trained_here else "<workdir>",
                  "trained_by_base": trained_here},
      "settings": {"num": args.num, "seed": 0, "vun_num": args.vun_num,
                   "vun_seeds": args.vun_seeds, "speed_rounds": args.speed_rounds,
                   "max_log2": args.max_log2, "speed_threshold": args.speed_threshold},
      "machine": machine_info(),
  }
  try:
    base_src, logs, cwd = tmp / "base_src", tmp / "logs", tmp / "cwd"
    logs.mkdir()
    cwd.mkdir()
    print(f"[{clock():7.1f} s] unpacking {args.base} ({base_sha[:12]}) with git archive")
    materialise(base_sha, base_src)
    old = Side("old", base_src, cwd, logs, data_dir, args.timeout, clock)
    new = Side("new", new_src, cwd, logs, data_dir, args.timeout, clock)
    report["imports"] = {"old": old.check_import(), "new": new.check_import()}
    if trained_here:
      old.pnag(["train", "stage1", "--space", "nb201", "--workdir", str(workdir),
                "--preset", "quick"], "train stage1 (quick)")
    elif not (workdir / "stage1" / "checkpoints").is_dir():
      raise CommandFailed(f"--workdir {args.workdir} has no stage1/checkpoints")
    report["checks"] = run_checks(args, old, new, tmp, workdir)
  except (CommandFailed, subprocess.CalledProcessError, OSError) as e:
    print(f"error: {redact.text(str(e))}", file=sys.stderr)
    report.setdefault("checks", [])
    report["error"] = str(e)
  finally:
    shutil.rmtree(tmp, ignore_errors=True)
    if trained_here and not args.keep_run:
      shutil.rmtree(workdir, ignore_errors=True)
  report["all_pass"] = bool(report["checks"]) and "error" not in report and all(
      c["pass"] for c in report["checks"])
  report["wall_seconds"] = clock()
  report = redact(report)
  (out / "compare.json").write_text(json.dumps(report, indent=2) + "\n")
  write_markdown(report, out / "compare.md")
  print()
  for c in report["checks"]:
    print(f"{'PASS' if c['pass'] else 'FAIL'}  {c['name']}: {c['detail']}")
  if "error" in report:
    print(f"FAIL  aborted: {report['error'][:300]}")
  print(f"{'all checks pass' if report['all_pass'] else 'SOME CHECKS FAIL'} in "
        f"{report['wall_seconds']:.0f} s; wrote {redact.text(str(out))}/compare.json, compare.md")
  return 0 if report["all_pass"] else 1


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
  """Shows defaults, except the empty ones whose help already says what happens."""

  def _get_help_string(self, action):
    if action.required or action.default is None or action.default is False:
      return action.help
    return super()._get_help_string(action)


def main(argv=None) -> int:
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                               formatter_class=_HelpFormatter)
  ap.add_argument("--base", required=True, help="the commit to compare against (any git rev)")
  ap.add_argument("--out", required=True, help="where compare.json and compare.md go")
  ap.add_argument("--workdir", help="an existing stage-1 workdir; default: the base commit "
                  "trains one into OUT/run (quick preset)")
  ap.add_argument("--new-src", help="directory holding the new pnag_jax/ package; default: "
                  "the repo root (the working tree)")
  ap.add_argument("--num", type=int, default=20_000, help="archs per `pnag generate`")
  ap.add_argument("--vun-num", type=int, default=1000, help="`pnag eval vun --num`")
  ap.add_argument("--vun-seeds", type=int, default=3, help="`pnag eval vun --seeds`")
  ap.add_argument("--speed-rounds", type=int, default=3,
                  help="rounds of `pnag eval speed`, old/new order alternating per round")
  ap.add_argument("--max-log2", type=int, default=14, help="`pnag eval speed --max-log2`")
  ap.add_argument("--speed-threshold", type=float, default=0.9,
                  help=f"least new/old ratio of the best {SPEED_PATH} archs/s")
  ap.add_argument("--data-dir", default=os.environ.get("PNAG_DATA_DIR"),
                  help="directory holding nb201/; the default is $PNAG_DATA_DIR")
  ap.add_argument("--timeout", type=float, default=3600.0,
                  help="seconds allowed to each pnag command")
  ap.add_argument("--keep-run", action="store_true",
                  help="keep OUT/run (the run trained here) instead of deleting it")
  args = ap.parse_args(argv)
  if args.speed_rounds < 1 or args.num < 1:
    ap.error("--speed-rounds and --num must be positive")
  return compare(args)


if __name__ == "__main__":
  sys.exit(main())
