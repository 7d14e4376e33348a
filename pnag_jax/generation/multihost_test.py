"""The multi-process launch: flags checked before the runtime starts, one-line failures.

Joining a real run takes processes of their own: see multiprocess_test.py.
"""

import socket
import sys
import time

import pytest

from pnag_jax.errors import PnagError
from pnag_jax.generation import multihost


@pytest.mark.parametrize("kw, match", [
    (dict(coordinator="h:1", num_processes=2, process_id=2), r"--process-id must be in 0 \.\. 1"),
    (dict(coordinator="h:1", num_processes=2, process_id=-1), "--process-id must be in"),
    (dict(coordinator="h:1", num_processes=0, process_id=0), "--num-processes must be positive"),
    (dict(coordinator="h", num_processes=2, process_id=0), "must be HOST:PORT, got 'h'"),
    (dict(coordinator="h:99999", num_processes=2, process_id=0), "must be HOST:PORT"),
    # Unicode digits: int() read the first and gRPC segfaulted; the second failed in int().
    (dict(coordinator="h:\u0661\u0662\u0663\u0664", num_processes=2, process_id=0),
     "must be HOST:PORT"),
    (dict(coordinator="h:\u00b2", num_processes=2, process_id=0), "must be HOST:PORT"),
    (dict(coordinator="h:1", num_processes=2), "needs all of --coordinator"),
    (dict(coordinator="h:1", auto=True), "--distributed detects the cluster itself"),
    (dict(coordinator="h:1", num_processes=2, process_id=0, heartbeat_timeout=0),
     r"--heartbeat-timeout must be 1 \.\. 604800 seconds \(a week\), got 0"),
    # The runtime's native ints refused these with a TypeError traceback.
    (dict(coordinator="h:1", num_processes=2, process_id=0, heartbeat_timeout=3_000_000_000),
     "--heartbeat-timeout must be 1 .. 604800"),
    (dict(coordinator="h:1", num_processes=2, process_id=0, init_timeout=10**20),
     "--init-timeout must be 1 .. 604800"),
])
def test_bad_launches_fail_in_one_line(kw, match):
  with pytest.raises(PnagError, match=match):
    multihost.Launch(**kw)


def test_one_process_by_its_flags_needs_no_runtime():
  assert multihost.Launch("h:1", 1, 0).single
  assert not multihost.Launch("h:1", 2, 0).single
  assert not multihost.Launch(auto=True).single


def test_parse_address_takes_names_and_bracketed_ipv6():
  assert multihost.parse_address("node-3.cluster:8476") == ("node-3.cluster", 8476)
  assert multihost.parse_address("[::1]:1234") == ("::1", 1234)


def test_an_unreachable_coordinator_times_out_in_one_line():
  port = multihost.free_local_port()
  t0 = time.monotonic()
  with pytest.raises(PnagError, match=rf"coordinator localhost:{port} unreachable after "
                                      r"0.5 s .*is process 0 running there\?"):
    multihost.wait_for_coordinator(f"localhost:{port}", 0.5)
  assert time.monotonic() - t0 < 5


def test_a_listening_coordinator_is_reached_with_time_left():
  with socket.socket() as server:
    server.bind(("localhost", 0))
    server.listen()
    left = multihost.wait_for_coordinator(f"localhost:{server.getsockname()[1]}", 30)
  assert 25 < left <= 30


def test_process_zero_cannot_host_on_a_taken_port():
  with socket.socket(socket.AF_INET6) as server:
    server.bind(("", 0))
    server.listen()
    port = server.getsockname()[1]
    launch = multihost.Launch(f"localhost:{port}", 2, 0)
    with pytest.raises(PnagError, match=f"cannot host the coordinator on port {port}"):
      multihost.initialize(launch)


def test_local_processes_do_not_block_on_each_others_output(tmp_path):
  # Process 0 waits for process 1 to end, as a barrier would; process 1 first writes
  # 1 MB to stderr. Read through pipes, one process after the other, that deadlocked.
  done = tmp_path / "done"
  waits = (f"import pathlib, time\nwhile not pathlib.Path({str(done)!r}).exists(): "
           "time.sleep(0.01)\nprint('zero')")
  writes = f"import sys, pathlib\nsys.stderr.write('x' * 2**20)\npathlib.Path({str(done)!r}).touch()"
  out = multihost.run_local([([sys.executable, "-c", waits], None),
                             ([sys.executable, "-c", writes], None)], timeout=60)
  assert [(o, len(e), c) for o, e, c in out] == [("zero\n", 0, 0), ("", 2**20, 0)]
  started = time.monotonic()
  with pytest.raises(PnagError, match="did not end within 0.5 s; all were stopped"):
    multihost.run_local([([sys.executable, "-c", "import time; time.sleep(60)"], None)],
                        timeout=0.5)
  assert time.monotonic() - started < 30


def test_a_dead_process_is_named_in_the_one_line_reason():
  runtime = RuntimeError(
      "INTERNAL: Barrier failed because: task is set to ERROR: UNAVAILABLE: Task 1 heartbeat "
      "timeout. This indicates that the remote task has failed\n\nRPC: /xla.coordination...")
  reason = multihost._first_line(runtime)  # pylint: disable=protected-access
  assert reason.startswith("process 1 stopped sending heartbeats") and "\n" not in reason
  assert multihost._first_line(RuntimeError("A\nB")) == "A"  # pylint: disable=protected-access


@pytest.mark.parametrize("args, fragment", [
    (["--num-processes", "2", "--process-id", "2", "--coordinator", "localhost:1"],
     "--process-id must be in 0 .. 1 for --num-processes 2, got 2"),
    (["--num-processes", "2", "--process-id", "0"], "needs all of --coordinator"),
    (["--distributed", "--process-id", "0"], "--distributed detects the cluster itself"),
    (["--heartbeat-timeout", "5"], "--heartbeat-timeout is for a multi-process run"),
    (["--coordinator", "localhost:1", "--num-processes", "2", "--process-id", "1",
      "--refs", "r.csv"], "--refs does not go with a multi-process run"),
    (["--coordinator", "localhost:1", "--num-processes", "2", "--process-id", "1",
      "--objective", "params"], "--objective does not go with a multi-process run"),
    (["--coordinator", "localhost:1", "--num-processes", "2", "--process-id", "1",
      "--out", "a.txt"], "--out must end in .jsonl or .csv"),
    (["--coordinator", "localhost:1", "--num-processes", "2", "--process-id", "1",
      "--minimize"], "--minimize does not go with a multi-process run"),
    (["--coordinator", "localhost:1", "--num-processes", "2", "--process-id", "1",
      "--budget", "5"], "--budget does not go with a multi-process run"),
    (["--coordinator", "localhost:1", "--num-processes", "2", "--process-id", "1",
      "--seed", str(2**32)], "--seed must be in [0, 2**32 - 1]"),
])
def test_generate_bad_multiprocess_flags_are_one_line(pnag_main, tmp_path, args, fragment):
  base = {"--workdir": str(tmp_path), "--num": "10", "--out": str(tmp_path / "a.csv")}
  for flag in args[::2]:
    base.pop(flag, None)
  code, _, err = pnag_main("generate", *[x for kv in base.items() for x in kv], *args)
  assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1, err
  assert not list(tmp_path.iterdir())


def test_generate_unreachable_coordinator_is_one_line(pnag_main, tmp_path):
  code, _, err = pnag_main("generate", "--workdir", tmp_path, "--num", "10", "--out",
                           tmp_path / "a.csv", "--coordinator", f"localhost:{multihost.free_local_port()}",
                           "--num-processes", "2", "--process-id", "1", "--init-timeout", "1")
  assert code == 2 and "unreachable after 1 s" in err and len(err.strip().splitlines()) == 1


def test_merge_takes_no_other_option_and_needs_a_manifest(pnag_main, tmp_path):
  code, _, err = pnag_main("generate", "--merge", tmp_path / "a.csv", "--seed", "2")
  assert code == 2 and "--merge takes no other option, got --seed" in err
  code, _, err = pnag_main("generate", "--merge", tmp_path / "a.csv")
  assert code == 2 and "a.csv.manifest.json: the multi-process run did not finish" in err
  code, _, err = pnag_main("generate", "--num", "3", "--out", tmp_path / "a.csv")
  assert code == 2 and "--workdir is required" in err


def test_distributed_outside_a_cluster_job_is_one_line(pnag, tmp_path):
  # A fresh process: the runtime must be joined before JAX starts a backend.
  r = pnag("generate", "--workdir", tmp_path, "--num", "10", "--out", tmp_path / "a.csv",
           "--distributed")
  assert r.returncode == 2 and r.stderr.startswith("pnag: error: --distributed found no "
                                                   "cluster to join"), r.stderr
  assert len(r.stderr.strip().splitlines()) == 1


def test_one_process_by_its_flags_writes_the_file_as_always(nb201_workdir, tmp_path, pnag_main):
  out = tmp_path / "a.csv"
  code, stdout, err = pnag_main("generate", "--workdir", nb201_workdir, "--num", "50", "--out",
                                out, "--coordinator", "localhost:1", "--num-processes", "1",
                                "--process-id", "0", "--chunk-size", "64")
  assert code == 0, err
  assert "generated 50 nb201 archs" in stdout
  assert sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]  # no parts, no manifest
  assert len(out.read_text().splitlines()) == 51
