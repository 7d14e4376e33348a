"""Fig. 3: train per t_max, then validity per step and accuracy; runs resume."""

import json

import pytest

from pnag_jax.errors import PnagError
from pnag_jax.evaluation import scc_ablation

# A short run of a small model: this checks the protocol, not what SCC does.
_SHORT = ("max_steps=10", "checkpoint_every=10", "dim=8", "decoder_hidden=32",
          "encoder_layers=1", "codebook_size=16", "eval_size=256")


def test_ablation_writes_every_t_max_and_resumes(tmp_path, data_dir, monkeypatch):
  rep = scc_ablation.run("nb201", tmp_path, seeds=(0,), t_max_values=(0, 6), num=200,
                         data_dir=str(data_dir), progress=False, extra_overrides=_SHORT)
  for name in ("scc_ablation.json", "scc_ablation.md", "scc_ablation.png"):
    assert (tmp_path / name).stat().st_size > 100
  assert [r["t_max"] for r in rep["summary"]] == [0, 6] and rep["steps"] == 6
  for r in rep["summary"]:
    assert len(r["step_strict_validity"]) == len(r["step_validity"]) == 6
    assert all(s <= f for s, f in zip(r["step_strict_validity"], r["step_validity"]))
    assert 0.0 <= r["validity"] <= 1.0 and "cifar10_test_acc" in r["accuracy"]
  configs = [json.loads((tmp_path / "runs" / f"tmax{t}_seed0" / "stage1" / "config.json"
                         ).read_text()) for t in (0, 6)]
  assert [c["scc_t_max"] for c in configs] == [0, 6] and configs[0]["max_steps"] == 10
  # A rerun reuses the finished runs instead of training again: training would fail.
  def no_training(*args, **kw):
    raise AssertionError("a finished run was trained again")
  monkeypatch.setattr(scc_ablation.stage1_training, "train_and_evaluate", no_training)
  again = scc_ablation.run("nb201", tmp_path, seeds=(0,), t_max_values=(0,), num=200,
                           data_dir=str(data_dir), progress=False, extra_overrides=_SHORT)
  assert again["results"][0]["heldout_exact_match"] == rep["results"][0]["heldout_exact_match"]
  # But not one trained otherwise than the report would say, finished or not (without
  # its report, it was resumed and reported under the new settings).
  (tmp_path / "runs" / "tmax6_seed0" / "stage1" / "report.json").unlink()
  for t_max, other in ((0, "max_steps=7"), (6, "learning_rate=0.5")):
    with pytest.raises(PnagError, match="holds a run trained with other settings"):
      scc_ablation.run("nb201", tmp_path, seeds=(0,), t_max_values=(t_max,), num=200,
                       data_dir=str(data_dir), progress=False,
                       extra_overrides=(*_SHORT, other))


def test_bad_requests(tmp_path):
  with pytest.raises(PnagError, match="scc-ablation supports nb201, mbv3, not 'darts'"):
    scc_ablation.run("darts", tmp_path)
  with pytest.raises(PnagError, match=r"t_max values must be in 0..6"):
    scc_ablation.run("nb201", tmp_path, t_max_values=(7,))
  with pytest.raises(PnagError, match=r"--num and --seeds must be >= 1"):
    scc_ablation.run("nb201", tmp_path / "o", seeds=())
  with pytest.raises(PnagError, match=r"at least one"):
    scc_ablation.run("nb201", tmp_path / "o", t_max_values=())
  with pytest.raises(PnagError, match=r"--t-max gives a value twice: 0 0"):
    scc_ablation.run("nb201", tmp_path / "o", t_max_values=(0, 0))
  with pytest.raises(PnagError, match=r"--set scc_t_max: the ablation sets it per run"):
    scc_ablation.run("nb201", tmp_path / "o", extra_overrides=("scc_t_max=3",))
  assert not (tmp_path / "o").exists()
