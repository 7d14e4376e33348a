"""Fixtures of the trainers' tests."""

import types

import pytest


@pytest.fixture
def step_clock(monkeypatch):
  """`step_clock(trainer_module)`: the trainer's clock moves 1 s per training step and
  not otherwise, so its `train_seconds` is a step count, exact across invocations."""

  def install(module):
    clock = types.SimpleNamespace(now=0.0)
    step = module.train_step

    def counted(*args, **kw):
      clock.now += 1.0
      return step(*args, **kw)

    monkeypatch.setattr(module, "train_step", counted)
    # The trainer's `time` only: orbax and JAX keep the real clock.
    monkeypatch.setattr(module, "time", types.SimpleNamespace(perf_counter=lambda: clock.now))
    return clock

  return install
