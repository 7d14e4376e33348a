"""Training reports: the seconds a resumed run already took, a finished run's report."""

import json
import resource

import pytest

from pnag_jax.errors import PnagError
from pnag_jax.training import reports


def test_seconds_before_reads_the_checkpoint_then_an_old_report(tmp_path):
  assert reports.seconds_before({"train_seconds": 19.5}, tmp_path, 100) == 19.5
  # A checkpoint from before the total was recorded, and no report: nothing known.
  assert reports.seconds_before({}, tmp_path, 100) == 0.0
  # ... with the report its run wrote at that step: that report's time.
  reports.write_report(tmp_path, {"steps": 100, "train_seconds": 19.9})
  assert reports.seconds_before({}, tmp_path, 100) == 19.9
  assert reports.seconds_before({}, tmp_path, 120) == 0.0  # another step's report
  assert reports.seconds_before({"train_seconds": 3.0}, tmp_path, 100) == 3.0


def test_a_finished_report_is_one_of_that_step_and_config(tmp_path):
  assert reports.finished(tmp_path, 10, "{}") is None  # no report
  (tmp_path / "config.json").write_text('{"a": 1}')
  reports.write_report(tmp_path, {"steps": 10, "x": 1})
  done = reports.finished(tmp_path, 10, '{"a": 1}')
  assert done == {"steps": 10, "x": 1}  # as written, without the file's config hash
  assert reports.CONFIG_HASH in json.loads((tmp_path / "report.json").read_text())
  assert reports.finished(tmp_path, 12, '{"a": 1}') is None
  assert reports.finished(tmp_path, 10, '{"a": 2}') is None
  # A run of another config rewrites config.json first and is killed before its report:
  # the old report is still not that config's.
  (tmp_path / "config.json").write_text('{"a": 2}')
  assert reports.finished(tmp_path, 10, '{"a": 2}') is None
  # The rerun of the report's own config returns it, and puts its config.json back.
  assert reports.finished(tmp_path, 10, '{"a": 1}') == done
  assert (tmp_path / "config.json").read_text() == '{"a": 1}'
  (tmp_path / "config.json").unlink()  # or deleted by hand
  assert reports.finished(tmp_path, 10, '{"a": 1}') == done
  assert (tmp_path / "config.json").read_text() == '{"a": 1}'
  # A resume carries both over: the report only when nothing is left to train.
  assert reports.resumed({"train_seconds": 2.0}, tmp_path, 10, 10, '{"a": 1}') == (
      done, 2.0)
  assert reports.resumed({"train_seconds": 2.0}, tmp_path, 8, 10, '{"a": 1}') == (None, 2.0)
  (tmp_path / "report.json").write_text('{"steps": 10, "x"')  # a half-written one
  assert reports.finished(tmp_path, 10, '{"a": 1}') is None
  reports.write_final(tmp_path, 10, {"steps": 10})
  assert json.loads((tmp_path / "report.json").read_text())["steps"] == 10
  assert not list(tmp_path.glob("*.tmp*"))


def test_a_row_cut_short_is_ended_and_skipped(tmp_path):
  with reports.open_metrics(tmp_path, 0) as log:
    log.write(json.dumps({"step": 1, "split": "train"}) + "\n")
  with (tmp_path / reports.METRICS).open("a") as log:
    log.write('{"step": 2, "split": "hel')  # a full disk or a power cut, mid-row
  with reports.open_metrics(tmp_path, 1) as log:
    log.write(json.dumps({"step": 2, "split": "heldout"}) + "\n")
  assert reports.read_metrics(tmp_path) == [{"step": 1, "split": "train"},
                                            {"step": 2, "split": "heldout"}]
  assert (tmp_path / reports.METRICS).read_text().count("\n") == 3


def test_rows_past_the_checkpoint_resumed_from_are_dropped(tmp_path):
  def log_steps(start, steps, split="train"):
    with reports.open_metrics(tmp_path, start) as log:
      for step in steps:
        log.write(json.dumps({"step": step, "split": split}) + "\n")

  def logged():
    return [(r["step"], r["split"]) for r in reports.read_metrics(tmp_path)]

  log_steps(0, (10, 20, 30))  # killed after its checkpoint at 20
  with (tmp_path / reports.METRICS).open("a") as log:
    log.write("not json\n")  # a line that is no row is kept as it is
  log_steps(20, (30, 40))  # the resumed invocation trains 30 again: one row for it
  assert logged() == [(10, "train"), (20, "train"), (30, "train"), (40, "train")]
  assert "not json\n" in (tmp_path / reports.METRICS).read_text()
  # A new run where a killed one never saved a checkpoint: none of its rows are this run's.
  log_steps(0, (5,), "heldout")
  assert logged() == [(5, "heldout")]
  # Nothing is lost: every dropped row is kept aside, in the order it went.
  dropped = [json.loads(line)["step"]
             for line in (tmp_path / reports.DROPPED_METRICS).read_text().splitlines()]
  assert dropped == [30, 10, 20, 30, 40]
  # A row a kill cut short there is ended too: the next rows moved stay readable.
  with (tmp_path / reports.DROPPED_METRICS).open("a") as log:
    log.write('{"step": 9')
  log_steps(0, ())
  tail = (tmp_path / reports.DROPPED_METRICS).read_text().splitlines()[-2:]
  assert tail == ['{"step": 9', '{"step": 5, "split": "heldout"}']
  log_steps(0, (5,), "heldout")
  before = (tmp_path / reports.METRICS).stat()
  log_steps(5, ())  # nothing past its step: the file is left as it is
  assert (tmp_path / reports.METRICS).stat().st_ino == before.st_ino


def test_a_final_row_measured_anew_replaces_the_last_one(tmp_path):
  reports.write_final(tmp_path, 30, {"exact": 0.5})
  # A rerun of the finished run measures anew (or the first was killed before its
  # report.json): one final row, the new one; the old one is kept aside.
  reports.write_final(tmp_path, 30, {"exact": 0.7})
  assert reports.read_metrics(tmp_path) == [{"step": 30, "split": "final", "exact": 0.7}]
  assert json.loads((tmp_path / reports.DROPPED_METRICS).read_text())["exact"] == 0.5
  # A run trained on past it keeps the final row of its earlier end as history.
  with reports.open_metrics(tmp_path, 30) as log:
    log.write(json.dumps({"step": 40, "split": "train"}) + "\n")
  assert [r["step"] for r in reports.read_metrics(tmp_path)] == [30, 40]


def test_a_log_that_is_no_text_is_kept_and_one_that_cannot_be_read_is_one_line(tmp_path):
  path = tmp_path / reports.METRICS
  garbage = b"\xff\xfe garbage\n{\"step\": 1, \"split\": \"train\", \"note\": \"a\xe2\x80\xa8b\"}\n"
  path.write_bytes(garbage)
  with reports.open_metrics(tmp_path, 0) as log:  # nothing past step 0 but the row
    log.write(json.dumps({"step": 1, "split": "train"}) + "\n")
  assert path.read_bytes().startswith(b"\xff\xfe garbage\n")
  assert reports.read_metrics(tmp_path) == [{"step": 1, "split": "train"}]
  assert b"a\xe2\x80\xa8b" in (tmp_path / reports.DROPPED_METRICS).read_bytes()
  path.unlink()
  path.mkdir()
  for read in (lambda: reports.open_metrics(tmp_path, 0), lambda: reports.read_metrics(tmp_path)):
    with pytest.raises(PnagError, match="cannot read .*metrics.jsonl") as e:
      read()
    assert "\n" not in str(e.value)
  path.rmdir()
  path.write_text(json.dumps({"step": 5, "split": "train"}) + "\n")
  (tmp_path / reports.DROPPED_METRICS).unlink()
  (tmp_path / reports.DROPPED_METRICS).mkdir()
  with pytest.raises(PnagError, match="cannot write .*metrics.dropped.jsonl"):
    reports.open_metrics(tmp_path, 0)  # step 5 has to move, and cannot
  assert path.read_text() == json.dumps({"step": 5, "split": "train"}) + "\n"  # kept


def test_a_log_the_disk_refuses_is_one_line_naming_it(tmp_path):
  row = json.dumps({"step": 1, "split": "train"}) + "\n"
  (tmp_path / reports.METRICS).write_text(row)
  limit = resource.getrlimit(resource.RLIMIT_FSIZE)
  # A file size limit at the log's size (Python ignores SIGXFSZ: the write fails).
  resource.setrlimit(resource.RLIMIT_FSIZE, (len(row), limit[1]))
  try:
    with pytest.raises(PnagError, match=r"^cannot write .*metrics\.jsonl: File too large$"):
      with reports.open_metrics(tmp_path, 1) as log:
        log.write(json.dumps({"step": 2, "split": "train"}) + "\n")
        log.flush()
  finally:
    resource.setrlimit(resource.RLIMIT_FSIZE, limit)
  assert reports.read_metrics(tmp_path) == [{"step": 1, "split": "train"}]
