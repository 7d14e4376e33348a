"""`pnag eval ofa`: what it refuses, with one-line errors and no output; the calls its
table and plot name."""

from types import SimpleNamespace

import jax
import numpy as np
import pytest

from pnag_jax.errors import PnagError
from pnag_jax.evaluation import ofa
from pnag_jax.guidance import elite
from pnag_jax.guidance.evolution import EvolutionConfig
from pnag_jax.spaces import get_space
from pnag_jax.tasks.ofa import OFAModels


def test_refuses_a_workdir_of_another_space(nb201_workdir, tmp_path, pnag_main, data_dir):
  code, _, err = pnag_main("eval", "ofa", "--workdir", nb201_workdir, "--out", tmp_path,
                           "--data-dir", data_dir)
  assert code == 2 and len(err.strip().splitlines()) == 1
  assert "it needs a stage 1 of space mbv3_r" in err and "'nb201'" in err


def test_refuses_bad_settings(nb201_workdir, tmp_path, pnag_main):
  code, _, err = pnag_main("eval", "ofa", "--workdir", nb201_workdir, "--out", tmp_path,
                           "--seeds", "0")
  assert code == 2 and "--seeds, --ratio and --generations must be >= 1" in err


@pytest.mark.parametrize("workdir, data, fragment", [
    ("nowhere", True, "no stage-1 checkpoints under"),
    (None, False, "needs OFA's predictor and Note10 tables"),
])
def test_a_missing_run_or_data_is_refused_before_any_output(workdir, data, fragment,
                                                             mbv3_r_workdir, tmp_path,
                                                             pnag_main, data_dir):
  out = tmp_path / "out"
  (tmp_path / "empty").mkdir()
  code, _, err = pnag_main("eval", "ofa", "--workdir", tmp_path / workdir if workdir
                           else mbv3_r_workdir, "--out", out, "--data-dir",
                           data_dir if data else tmp_path / "empty")
  assert code == 2 and fragment in err and len(err.strip().splitlines()) == 1, err
  assert not out.exists()


def test_a_budget_below_the_fastest_subnet_names_it_before_any_output(mbv3_r_workdir,
                                                                      tmp_path, pnag_main,
                                                                      data_dir):
  # The exact bound, as `pnag generate --constraint` gives it, not a failed random draw.
  lowest, _ = OFAModels.from_dir(data_dir / "mbv3").note10_latency_extremes()
  out = tmp_path / "out"
  code, _, err = pnag_main("eval", "ofa", "--workdir", mbv3_r_workdir, "--out", out,
                           "--data-dir", data_dir, "--budgets", "20", "5")
  assert code == 2 and err == (f"pnag: error: --budgets 5: no mbv3_r arch meets it; the "
                               f"smallest achievable note10_latency is {lowest:.6g} ms\n"), err
  assert not out.exists()
  code, _, err = pnag_main("eval", "ofa", "--workdir", mbv3_r_workdir, "--out", out,
                           "--data-dir", data_dir, "--budgets", "20", "nan")
  assert code == 2 and err == "pnag: error: --budgets must be numbers of ms, got nan\n", err
  assert not out.exists()


@pytest.mark.parametrize("generations, short", [(500, "50k"), (50, "5k"), (3, "400")])
def test_the_table_and_the_plot_name_the_evolutions_own_calls(generations, short, tmp_path,
                                                               monkeypatch):
  calls = EvolutionConfig(generations=generations).calls()
  row = {"evolution_best": 0.8, "evolution_best_latency_ms": 20.0, "guided_best": 0.81,
         "guided_best_latency_ms": 19.0}
  stat = {"mean": 0.8, "min": 0.8, "max": 0.8}
  report = {"evolution": {"calls": calls, "compile_seconds": 1.0},
            "guided": {"calls": calls // 5, "ratio": 5}, "seeds": 1,
            "machine": {"device_kind": "cpu", "cpu_count": 2}, "tutorial": ofa.TUTORIAL,
            "budgets": {"20": {"rows": [row], "evolution_best": stat,
                               "evolution_at_equal_calls": stat, "guided_best": stat,
                               "guided_reached_evolution_final": 1,
                               "guided_calls_to_evolution_final_max": 100,
                               "evolution_seconds": stat, "guided_seconds": stat,
                               "all_valid_within_budget": True}}}
  assert f"| evolution, {short} calls % |" in ofa.format_table(report)
  figures = []
  monkeypatch.setattr(ofa.reports, "save_figure", lambda fig, path: figures.append(fig))
  ofa.plot(report, tmp_path / "ofa.png")
  labels = [t.get_text() for t in figures[0].axes[0].get_legend().get_texts()]
  assert f"OFA evolution ({short} calls)" in labels


def test_a_predictor_of_the_wrong_shape_is_refused_before_any_output(mbv3_r_workdir, tmp_path,
                                                                     pnag_main, data_dir):
  import shutil  # pylint: disable=g-import-not-at-top
  bad = tmp_path / "data"
  shutil.copytree(data_dir / "mbv3", bad / "mbv3")
  z = dict(np.load(bad / "mbv3" / "ofa_acc_predictor.npz"))
  z["w1"] = z["w1"][:300]
  np.savez(bad / "mbv3" / "ofa_acc_predictor.npz", **z)
  out = tmp_path / "out"
  code, _, err = pnag_main("eval", "ofa", "--workdir", mbv3_r_workdir, "--out", out,
                           "--data-dir", bad)
  assert code == 2 and len(err.strip().splitlines()) == 1, err
  assert "w1 has shape (300, 400), expected (400, N)" in err
  assert not out.exists()


def test_a_repeated_budget_is_refused(tmp_path):
  with pytest.raises(PnagError, match=r"^--budgets 25 is given twice"):
    ofa.run(tmp_path / "nowhere", tmp_path / "out", budgets=[25.0, 20.0, 25.0])
  assert not (tmp_path / "out").exists()


def test_check_top_is_not_capped_and_budgets_are_labelled_as_given(mbv3_r_workdir, data_dir,
                                                                   tmp_path, monkeypatch,
                                                                   capsys):
  # The searches faked: what is checked here is what the protocol does with their results.
  space = get_space("mbv3_r")
  n = ofa.TOP + 5
  genes = np.asarray(jax.jit(space.sample, static_argnums=1)(jax.random.key(0), n))
  found = elite.SearchResult(genes, np.linspace(0.8, 0.7, n), n, n, [(n, 0.8, 0.1)], 0.1)
  evolved = SimpleNamespace(trace=np.full(3, 0.8), best_genes=genes[0])
  monkeypatch.setattr(ofa.evolution, "compiled", lambda *a, **k: (lambda *a: evolved, 0.0))
  monkeypatch.setattr(ofa.elite, "make_sampler", lambda *a: None)
  monkeypatch.setattr(ofa.elite, "search", lambda *a, **k: found)
  checked = []

  def check_genes(space_name, genes, valid, **kwargs):
    checked.append(len(genes))
    return [{"executable": True}] * len(genes)

  monkeypatch.setattr(ofa.executable, "check_genes", check_genes)
  report = ofa.run(mbv3_r_workdir, tmp_path / "out", budgets=[25.0], seeds=1, ratio=1,
                   generations=2, check_top=ofa.TOP + 2, data_dir=data_dir)
  assert checked == [ofa.TOP + 2]
  assert list(report["budgets"]) == ["25"]
  assert "  25 ms seed 0:" in capsys.readouterr().out
  assert "| 25 ms " in ofa.format_table(report)
