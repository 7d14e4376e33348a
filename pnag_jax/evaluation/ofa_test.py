"""`pnag eval ofa`: what it refuses, with one-line errors."""


def test_refuses_a_workdir_of_another_space(nb201_workdir, tmp_path, pnag_main, data_dir):
  code, _, err = pnag_main("eval", "ofa", "--workdir", nb201_workdir, "--out", tmp_path,
                           "--data-dir", data_dir)
  assert code == 2 and len(err.strip().splitlines()) == 1
  assert "it needs a stage 1 of space mbv3_r" in err and "'nb201'" in err


def test_refuses_bad_settings(nb201_workdir, tmp_path, pnag_main):
  code, _, err = pnag_main("eval", "ofa", "--workdir", nb201_workdir, "--out", tmp_path,
                           "--seeds", "0")
  assert code == 2 and "--seeds, --ratio and --generations must be >= 1" in err
