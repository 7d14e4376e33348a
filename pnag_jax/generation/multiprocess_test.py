"""`pnag generate` over two processes of JAX's runtime (CPU, localhost), as users run it.

Each process is `pnag generate --coordinator ... --process-id I` with 4 fake CPU
devices; the merged file must be the 1-process, 1-device file byte for byte, and a
process killed partway must cost a rerun only its own part.
"""

import os
import signal
import subprocess
import sys
import time

import pytest

from pnag_jax.generation import multihost, parts

_NUM, _CHUNK = 24_000, 1024
# Long enough for process 0 to finish its part after process 1 dies under a loaded CI
# box; process 0 then waits this long at the barrier before the runtime fails it.
_HEARTBEAT_S = 6


def _env(data_dir, devices):
  # XLA's default optimisation, unlike the suite's: these processes run more than they
  # compile (24,000 archs: 0.3 s against 9 s at the suite's -O0).
  return {**os.environ, "PNAG_DATA_DIR": str(data_dir),
          "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices} "
                       "--xla_cpu_multi_thread_eigen=false"}


def _generate(workdir, out, data_dir, *flags, devices):
  cmd = [sys.executable, "-m", "pnag_jax.cli", "generate", "--workdir", str(workdir),
         "--num", str(_NUM), "--seed", "3", "--chunk-size", str(_CHUNK), "--out", str(out),
         *flags]
  return subprocess.Popen(cmd, env=_env(data_dir, devices), text=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _launch(workdir, out, data_dir, port, second=()):
  """Starts processes 0 and 1 of one run, 4 devices each (process 1 with the flags
  `second` added); returns their Popen handles."""
  flags = ("--coordinator", f"localhost:{port}", "--num-processes", "2",
           "--heartbeat-timeout", str(_HEARTBEAT_S), "--init-timeout", "60")
  return [_generate(workdir, out, data_dir, *flags, "--process-id", str(i),
                    *(second if i else ()), devices=4)
          for i in (0, 1)]


def _finish(procs, timeout=120):
  return [(p.wait(timeout), *p.communicate()) for p in procs]


@pytest.fixture(scope="module")
def one_process_file(nb201_workdir, data_dir, tmp_path_factory):
  """The file of `pnag generate` as one process on one device."""
  out = tmp_path_factory.mktemp("one_process") / "archs.csv"
  (code, _, err), = _finish([_generate(nb201_workdir, out, data_dir, devices=1)])
  assert code == 0, err[-2000:]
  return out.read_bytes()


def test_two_processes_merge_to_the_one_process_file(nb201_workdir, data_dir, tmp_path,
                                                     one_process_file, pnag_main):
  out = tmp_path / "archs.csv"
  results = _finish(_launch(nb201_workdir, out, data_dir, multihost.free_local_port()))
  for i, (code, stdout, stderr) in enumerate(results):
    assert code == 0, stderr[-2000:]
    assert f"process {i} of 2: wrote archs" in stdout
  assert "merge with: pnag generate --merge" in results[0][1]
  assert not out.exists()  # parts and a manifest until merged
  man = parts.read_json(parts.manifest_path(out), "manifest")
  assert [e["count"] for e in man["part_files"]] == [_NUM // 2, _NUM // 2]
  assert man["regenerated_parts"] == [0, 1]
  assert parts.part_path(out, 0, 2).read_bytes().startswith(b"arch,nb201_index,")
  assert not parts.part_path(out, 1, 2).read_bytes().startswith(b"arch,")
  assert pnag_main("generate", "--merge", out)[0] == 0
  assert out.read_bytes() == one_process_file
  files = {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in tmp_path.iterdir()}
  # A rerun where one process fails to load (a data dir missing on its host): it tells
  # the others, which waited for its run until the runtime's shutdown timeout aborted
  # them all, and none touches a file of the finished run (process 1 had overwritten
  # its part, and process 0 removed the manifest, before a mismatch was found; the
  # agreement itself, a seed that differs, is `parts.check_one_run`'s test).
  t0 = time.monotonic()
  results = _finish(_launch(nb201_workdir, out, data_dir, multihost.free_local_port(),
                            second=("--data-dir", tmp_path / "nowhere")))
  assert [r[0] for r in results] == [2, 2], results[0][2][-2000:] + results[1][2][-2000:]
  assert "process 1 failed: NB201 data directory" in results[0][2]
  assert time.monotonic() - t0 < 60
  assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in tmp_path.iterdir()} == files
  # Process 1 told to write another file: its part would never meet this manifest.
  results = _finish(_launch(nb201_workdir, out, data_dir, multihost.free_local_port(),
                            second=("--out", tmp_path / "other.csv")))
  assert [r[0] for r in results] == [2, 2], results[0][2][-2000:] + results[1][2][-2000:]
  assert "process 1 is running another run than process 0: out other.csv (process 0: " \
         "archs.csv)" in results[0][2]
  assert {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in tmp_path.iterdir()} == files


def test_processes_with_other_device_counts_are_refused_in_one_line(nb201_workdir, data_dir,
                                                                    tmp_path):
  # Orbax's load all-gathers over the processes' devices, and crashed on 1 against 2.
  flags = ("--coordinator", f"localhost:{multihost.free_local_port()}", "--num-processes", "2")
  results = _finish([_generate(nb201_workdir, tmp_path / "a.csv", data_dir, *flags,
                               "--process-id", str(i), devices=n) for i, n in ((0, 1), (1, 2))])
  for code, _, err in results:
    assert code == 2 and err.endswith("different numbers of devices (process 0: 1, process "
                                      "1: 2); give every process as many\n"), err[-2000:]
  assert list(tmp_path.iterdir()) == []


def test_a_killed_process_costs_the_rerun_only_its_part(nb201_workdir, data_dir, tmp_path,
                                                         one_process_file, pnag_main):
  out = tmp_path / "archs.csv"
  port = multihost.free_local_port()
  procs = _launch(nb201_workdir, out, data_dir, port)
  # The writer opens F.part-1.partial before its first chunk is drawn: partway for sure.
  partial = parts.part_path(out, 1, 2).with_name(parts.part_path(out, 1, 2).name + ".partial")
  deadline = time.monotonic() + 60
  while not partial.exists() and procs[1].poll() is None and time.monotonic() < deadline:
    time.sleep(0.005)
  procs[1].send_signal(signal.SIGKILL)
  (code0, _, err0), (code1, _, _) = _finish(procs)
  assert code1 == -signal.SIGKILL and code0 != 0
  assert "heartbeat" in err0  # the runtime's reason, and ours where it lets us print
  assert not parts.manifest_path(out).exists()
  part0 = parts.part_path(out, 0, 2)
  assert parts.sidecar_path(part0).exists() and not parts.part_path(out, 1, 2).exists()
  before = part0.stat()

  results = _finish(_launch(nb201_workdir, out, data_dir, port))
  assert [r[0] for r in results] == [0, 0], results[0][2][-2000:] + results[1][2][-2000:]
  assert "process 0 of 2: kept (current)" in results[0][1]
  assert "process 1 of 2: wrote" in results[1][1]
  after = part0.stat()
  assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
  assert parts.read_json(parts.manifest_path(out), "manifest")["regenerated_parts"] == [1]
  assert pnag_main("generate", "--merge", out)[0] == 0
  assert out.read_bytes() == one_process_file
