"""JAX's multi-controller runtime for `pnag generate`: identity, rendezvous, barriers.

  cluster = multihost.initialize(Launch(coordinator="host0:1234", num_processes=2,
                                        process_id=1))
  ...                                  # generate this process's block on its devices
  multihost.publish("part/1", sidecar)
  multihost.barrier("parts-written")
  sidecars = multihost.gather("part", cluster.num_processes)   # process 0

Everything goes through `jax.distributed`: its coordination service (process 0 hosts
it) gives each process its id, the rendezvous, barriers and a small key-value store.
Generation itself needs no collective, so nothing here touches the devices, and the
parts' sidecars travel through the key-value store, not a shared file system.

A process that dies stops sending heartbeats; after `heartbeat_timeout` the service
fails every barrier, and the runtime ends the surviving processes. The barrier's
error is caught to print one line first (`RuntimeFailure`).
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import json
import re
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import jax

from pnag_jax.errors import PnagError

# Generating a block may take hours; a dead process is caught by heartbeats, not this.
BARRIER_TIMEOUT_MS = 7 * 24 * 3600 * 1000
MAX_TIMEOUT_S = 7 * 24 * 3600
_KEY_PREFIX = "pnag/"


class RuntimeFailure(PnagError):
  """The distributed runtime failed a barrier: another process died or timed out."""


@dataclasses.dataclass(frozen=True)
class Launch:
  """How a process joins a run: explicitly, or `auto` (the cluster's own variables).

  Attributes:
    coordinator: HOST:PORT of process 0's coordination service.
    num_processes, process_id: this run's size and this process's place in it.
    auto: let `jax.distributed.initialize()` detect all three (SLURM, TPU pods, Open MPI).
    init_timeout: seconds to wait for the coordinator and every process to join.
    heartbeat_timeout: seconds of silence after which a process counts as dead.
  """

  coordinator: str | None = None
  num_processes: int | None = None
  process_id: int | None = None
  auto: bool = False
  init_timeout: int = 300
  heartbeat_timeout: int = 60

  def __post_init__(self):
    explicit = (self.coordinator, self.num_processes, self.process_id)
    if self.auto and any(v is not None for v in explicit):
      raise PnagError("--distributed detects the cluster itself; it does not go with "
                      "--coordinator, --num-processes or --process-id")
    if not self.auto:
      if any(v is None for v in explicit):
        raise PnagError("a multi-process run needs all of --coordinator HOST:PORT, "
                        "--num-processes P and --process-id I (or --distributed)")
      if self.num_processes < 1:
        raise PnagError(f"--num-processes must be positive, got {self.num_processes}")
      if not 0 <= self.process_id < self.num_processes:
        raise PnagError(f"--process-id must be in 0 .. {self.num_processes - 1} for "
                        f"--num-processes {self.num_processes}, got {self.process_id}")
      parse_address(self.coordinator)
    for name in ("init_timeout", "heartbeat_timeout"):
      # Above a week is a typo, and the runtime's native ints stop at 2**31 - 1.
      if not 1 <= getattr(self, name) <= MAX_TIMEOUT_S:
        raise PnagError(f"--{name.replace('_', '-')} must be 1 .. {MAX_TIMEOUT_S} seconds "
                        f"(a week), got {getattr(self, name)}")

  @property
  def single(self) -> bool:
    """One process by its own flags: no runtime to start, the file is written as always."""
    return not self.auto and self.num_processes == 1


@dataclasses.dataclass(frozen=True)
class Cluster:
  process_id: int
  num_processes: int


def free_local_port() -> int:
  """A TCP port free on localhost now: for runs of local processes (tests, benchmarks)."""
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def run_local(commands: list[tuple[list[str], dict]], timeout: float | None = None
              ) -> list[tuple[str, str, int]]:
  """Runs the processes of one run on this machine, `(argv, env)` each, all at once;
  (stdout, stderr, exit code) of each once every one has ended.

  Their output goes to files, not pipes: read one process after another, a pipe that
  the next process filled (its progress bar, after about 90 s) blocked it, and the
  run's barrier then blocked every other. Past `timeout` seconds, all are killed.

  Raises:
    PnagError: the timeout passed.
  """
  with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
    logs = [tuple(stack.enter_context((Path(tmp) / f"{i}.{s}").open("w+"))
                  for s in ("out", "err")) for i in range(len(commands))]
    procs = []
    try:
      for (argv, env), (out, err) in zip(commands, logs):
        procs.append(subprocess.Popen(argv, env=env, stdout=out, stderr=err, text=True))
      deadline = None if timeout is None else time.monotonic() + timeout
      for p in procs:
        p.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
      raise PnagError(f"the {len(procs)} processes did not end within {timeout:g} s; "
                      "all were stopped") from None
    finally:
      for p in procs:
        if p.poll() is None:
          p.kill()
          p.wait()
    results = []
    for p, (out, err) in zip(procs, logs):
      out.seek(0)
      err.seek(0)
      results.append((out.read(), err.read(), p.returncode))
    return results


def parse_address(address: str) -> tuple[str, int]:
  host, sep, port = address.rpartition(":")
  # ASCII digits only: str.isdigit() takes "١٢٣٤", which int() reads and gRPC crashes on.
  if not sep or not host or not re.fullmatch(r"[0-9]{1,5}", port) or not 0 < int(port) < 65536:
    raise PnagError(f"--coordinator must be HOST:PORT, got {address!r}")
  return host.strip("[]"), int(port)


def wait_for_coordinator(address: str, timeout: float) -> float:
  """Seconds left of `timeout` once `address` accepts connections.

  The runtime's own client aborts the process (no Python error) when it cannot reach
  the coordinator, so processes other than 0 knock first and fail with one line.
  """
  host, port = parse_address(address)
  deadline = time.monotonic() + timeout
  while True:
    try:
      with socket.create_connection((host, port), timeout=1.0):
        return max(deadline - time.monotonic(), 1.0)
    except OSError as e:
      if time.monotonic() >= deadline:
        raise PnagError(f"coordinator {address} unreachable after {timeout:g} s "
                        f"({e.strerror or e}); is process 0 running there?") from None
      time.sleep(0.2)


def _check_bindable(address: str) -> None:
  """Process 0 hosts the service: fail in one line if its port is taken."""
  _, port = parse_address(address)
  with socket.socket(socket.AF_INET6 if socket.has_ipv6 else socket.AF_INET) as s:
    # As the service binds: a port left in TIME_WAIT by the last run is free to reuse.
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
      s.bind(("", port))
    except OSError as e:
      raise PnagError(f"cannot host the coordinator on port {port}: {e.strerror or e}") from None


def initialize(launch: Launch) -> Cluster:
  """Joins the run (`jax.distributed.initialize`); call before anything touches a device."""
  timeout = launch.init_timeout
  if not launch.auto:
    if launch.process_id == 0:
      _check_bindable(launch.coordinator)
    else:
      timeout = wait_for_coordinator(launch.coordinator, timeout)
  try:
    jax.distributed.initialize(
        coordinator_address=launch.coordinator, num_processes=launch.num_processes,
        process_id=launch.process_id, initialization_timeout=int(timeout),
        heartbeat_timeout_seconds=launch.heartbeat_timeout)
  except (ValueError, RuntimeError) as e:
    if launch.auto:
      raise PnagError(f"--distributed found no cluster to join (SLURM, a TPU pod, Open MPI): "
                      f"{str(e).splitlines()[0]}; give --coordinator, --num-processes and "
                      "--process-id instead") from None
    raise PnagError(f"the distributed runtime did not start: {str(e).splitlines()[0]}") from None
  # Every process sees the whole topology, so every one refuses alike. Orbax's load
  # syncs the processes with an all-gather that needs as many devices in each.
  local = collections.Counter(d.process_index for d in jax.devices())
  if len(set(local.values())) > 1:
    shutdown()
    raise PnagError("the processes have different numbers of devices ("
                    + ", ".join(f"process {p}: {n}" for p, n in sorted(local.items()))
                    + "); give every process as many")
  return Cluster(jax.process_index(), jax.process_count())


def _client():
  # The coordination service's client: jax.distributed keeps it private, and it is
  # the only way to a barrier or the key-value store without a device collective.
  from jax._src import distributed  # pylint: disable=g-import-not-at-top
  client = distributed.global_state.client
  if client is None:
    raise RuntimeError("jax.distributed is not initialized")
  return client


def barrier(name: str, timeout_ms: int = BARRIER_TIMEOUT_MS) -> None:
  """Waits until every process reaches barrier `name`; one line if the runtime fails it."""
  try:
    _client().wait_at_barrier(_KEY_PREFIX + name, timeout_ms)
  except Exception as e:  # the runtime's own error type is not public
    raise RuntimeFailure(f"the run failed at barrier {name!r}: {_first_line(e)}") from None


def publish(key: str, value: dict) -> None:
  _client().key_value_set(_KEY_PREFIX + key, json.dumps(value))


def gather(prefix: str, count: int, timeout_ms: int = 60_000) -> list[dict]:
  """The values published under `prefix/0 .. prefix/count-1`, in order."""
  client = _client()
  try:
    return [json.loads(client.blocking_key_value_get(f"{_KEY_PREFIX}{prefix}/{i}", timeout_ms))
            for i in range(count)]
  except Exception as e:  # pylint: disable=broad-except
    raise RuntimeFailure(f"could not collect {prefix!r} from every process: "
                         f"{_first_line(e)}") from None


def shutdown() -> None:
  jax.distributed.shutdown()


def _first_line(e: Exception) -> str:
  text = str(e).strip()
  dead = re.search(r"Task (\d+) heartbeat timeout", text)
  if dead:
    return (f"process {dead.group(1)} stopped sending heartbeats (it died or was killed); "
            "rerun the same command to regenerate only the missing parts")
  # The service's messages run to many lines of RPC detail; the first says what failed.
  return text.splitlines()[0] if text else type(e).__name__
