"""Once-for-All's MobileNetV3 accuracy predictor and Note10 latency tables, in JAX.

  ofa = OFAModels.from_dir(data_dir / "mbv3")     # ofa_acc_predictor.npz, note10/*.yaml
  acc = ofa.accuracy(ks, e, d, r)                   # float32[n], a fraction (0.8171)
  lat = ofa.note10_latency(ks, e, d, r)             # float64[n], ms

`ks`, `e` are int[n, 20] (kernel sizes 3/5/7, expand ratios 3/4/6), `d` int[n, 5]
(stage depths 2/3/4) and `r` int[n] (resolution 160..224 by 16), OFA's own values
(not gene indices). The same two functions on `mbv3_r` genes, pure and jit-able for
searches that run on device (`accuracy_of_genes`, `latency_of_genes` over
`OFAModels.arrays`), are the `ofa_acc` and `note10_latency` tasks. Slot i belongs to stage i // 4, position i % 4, and is active when
i % 4 < d[i // 4]; inactive slots' ks and e are ignored, as in OFA.

The predictor is OFA's tutorial MLP (128 -> 400 -> 400 -> 400 -> 1, ReLU) on its
128-dim encoding: a one-hot of ks and of e per active slot, and of the resolution
(`SOURCE.md` of the data directory). The latency is the tutorial's table sum: the
stem, the fixed first block, each active block's entry, and the head, from the table
of the subnet's resolution. Both are vectorised: the latency of every (resolution,
slot, ks, e) is gathered from the yaml once, so a batch is one gather and a sum.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import yaml

from pnag_jax.data import nb201 as nb201_data
from pnag_jax.errors import DataError, PnagError, one_line

KERNEL_SIZES = (3, 5, 7)
EXPAND_RATIOS = (3, 4, 6)
DEPTHS = (2, 3, 4)
RESOLUTIONS = (160, 176, 192, 208, 224)
NUM_STAGES, LAYERS_PER_STAGE = 5, 4
NUM_SLOTS = NUM_STAGES * LAYERS_PER_STAGE

# The Note10 tables' network (OFA MobileNetV3 at width multiplier 1.2).
_FIRST_WIDTH = 24
_STAGE_WIDTHS = (32, 48, 96, 136, 192)
_STAGE_STRIDES = (2, 2, 2, 1, 2)
_STAGE_SE = (0, 1, 0, 1, 1)
_STAGE_HS = (0, 0, 1, 1, 1)
_FINAL_EXPAND, _FEATURE_MIX, _CLASSES = 1152, 1536, 1000


#: Where OFA's files live under a data directory (the parent of `nb201/` and `mbv3/`).
SUBDIR = "mbv3"
#: The spaces whose subnets OFA's predictor and latency tables score.
SPACES = ("mbv3", "mbv3_r")


def find_dir(data_dir=None) -> Path | None:
  """The directory holding `ofa_acc_predictor.npz`: `data_dir` (else `$PNAG_DATA_DIR`)
  itself or its `mbv3/`; None where there is none (OFA's tasks are then absent)."""
  given = data_dir if data_dir is not None else os.environ.get(nb201_data.ENV_VAR)
  if given:
    root = Path(given).expanduser()
    if data_dir is not None and not root.is_dir():
      # As NB201's tables: a directory the user named is no optional default.
      raise DataError(f"data directory {str(root)!r} does not exist")
    for cand in (root / SUBDIR, root):
      if (cand / "ofa_acc_predictor.npz").is_file():
        return cand
    if data_dir is not None and (root / SUBDIR).is_dir():
      # A folder named for OFA's files, named by the user, without them.
      raise DataError(f"no ofa_acc_predictor.npz (a file) in {str(root / SUBDIR)!r}; add "
                      "it (BUILD.md), or give a --data-dir without an mbv3/ folder")
  return None


def _index_of(values: np.ndarray, choices: tuple[int, ...], name: str) -> np.ndarray:
  values = np.asarray(values)
  idx = np.searchsorted(np.asarray(choices), values)
  idx = np.clip(idx, 0, len(choices) - 1)
  if (np.asarray(choices)[idx] != values).any():
    bad = values[np.asarray(choices)[idx] != values].ravel()[0]
    raise PnagError(f"OFA {name} must be one of {choices}, got {bad}")
  return idx


def _check(ks, e, d, r):
  ks, e, d, r = (np.atleast_1d(np.asarray(x)) for x in (ks, e, d, r))
  if ks.ndim == 1:
    ks, e, d = ks[None], e[None], d[None]
  n = ks.shape[0]
  if ks.shape != (n, NUM_SLOTS) or e.shape != (n, NUM_SLOTS) or d.shape != (n, NUM_STAGES) \
      or r.shape != (n,):
    raise PnagError(f"OFA subnets need ks, e int[n, {NUM_SLOTS}], d int[n, {NUM_STAGES}] and "
                    f"r int[n]; got {ks.shape}, {e.shape}, {d.shape}, {r.shape}")
  return (_index_of(ks, KERNEL_SIZES, "ks"), _index_of(e, EXPAND_RATIOS, "e"),
          _index_of(d, DEPTHS, "d"), _index_of(r, RESOLUTIONS, "resolution"))


def _active(d_idx: np.ndarray) -> np.ndarray:
  """bool[n, 20]: the slots within each stage's depth."""
  depth = np.asarray(DEPTHS)[d_idx]
  return (np.arange(LAYERS_PER_STAGE)[None, None] < depth[..., None]).reshape(
      d_idx.shape[0], NUM_SLOTS)


def encode(ks, e, d, r) -> np.ndarray:
  """float32[n, 128]: OFA's tutorial encoding of each subnet."""
  k_idx, e_idx, d_idx, r_idx = _check(ks, e, d, r)
  n = k_idx.shape[0]
  active = _active(d_idx)
  x = np.zeros((n, 128), np.float32)
  rows, slots = np.nonzero(active)
  x[rows, 3 * slots + k_idx[rows, slots]] = 1.0
  x[rows, 60 + 3 * slots + e_idx[rows, slots]] = 1.0
  # One bit per 16 pixels from 112: the five resolutions are bits 123..127.
  x[np.arange(n), 120 + (np.asarray(RESOLUTIONS)[r_idx] - 112) // 16] = 1.0
  return x


@jax.jit
def _mlp(params: dict, x: jax.Array) -> jax.Array:
  h = x
  for i in range(3):
    h = jax.nn.relu(h @ params[f"w{i}"] + params[f"b{i}"])
  return (h @ params["w3"] + params["b3"])[..., 0]


def _checked_mlp(path: Path, arrays: dict) -> dict:
  """`arrays`, once they are the float MLP that `_mlp` runs: from `encode`'s 128
  features through hidden layers of any width to one output, every value finite.

  Raises:
    DataError: naming `path` and the first array that does not fit.
  """
  fan_in = 128
  for i in range(4):
    w, b = arrays[f"w{i}"], arrays[f"b{i}"]
    if w.ndim != 2 or w.shape[0] != fan_in or (i == 3 and w.shape[1] != 1):
      raise DataError(f"OFA's accuracy predictor {path}: w{i} has shape {w.shape}, expected "
                      f"({fan_in}, {1 if i == 3 else 'N'})")
    if b.shape != w.shape[1:]:
      raise DataError(f"OFA's accuracy predictor {path}: b{i} has shape {b.shape}, expected "
                      f"{w.shape[1:]} (w{i} has shape {w.shape})")
    for name, a in ((f"w{i}", w), (f"b{i}", b)):
      if not np.issubdtype(a.dtype, np.floating):
        raise DataError(f"OFA's accuracy predictor {path}: {name} is {a.dtype}, not floats")
      if not np.isfinite(a).all():
        raise DataError(f"OFA's accuracy predictor {path}: {name} holds NaN or infinite "
                        "values")
    fan_in = w.shape[1]
  return arrays


def _latency_tables(table_dir: Path) -> tuple[np.ndarray, np.ndarray]:
  """(fixed float64[5], per_slot float64[5, 20, 3, 3]) of the Note10 tables, by
  resolution: the stem, first block and head; each slot's block by ks and e."""
  fixed = np.zeros(len(RESOLUTIONS))
  per_slot = np.zeros((len(RESOLUTIONS), NUM_SLOTS, len(KERNEL_SIZES), len(EXPAND_RATIOS)))
  for ri, r in enumerate(RESOLUTIONS):
    path = table_dir / f"{r}_lookup_table.yaml"
    try:
      table = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
      # A YAML error spans lines (the mark and a caret under it).
      raise DataError(f"cannot read the Note10 latency table {path}: "
                      f"{one_line(err)}") from err

    def ms(key, path=path, table=table):
      try:
        raw = table[key]["mean"]
        value = float(raw)
      except (KeyError, TypeError, ValueError):
        raise DataError(f"the Note10 table {path} has no mean latency for {key!r}") from None
      # YAML reads `true` as a bool (float 1.0); a latency <= 0 would win every search.
      if isinstance(raw, bool) or not (math.isfinite(value) and value > 0):
        raise DataError(f"the Note10 table {path} has mean latency {raw!r} for {key!r}, "
                        "not a positive number")
      return value

    f = (r + 1) // 2
    fixed[ri] = ms(f"Conv-input:{r}x{r}x3-output:{f}x{f}x{_FIRST_WIDTH}") + ms(
        f"expanded_conv-input:{f}x{f}x{_FIRST_WIDTH}-output:{f}x{f}x{_FIRST_WIDTH}"
        f"-expand:{_FIRST_WIDTH}-kernel:3-stride:1-idskip:1-se:0-hs:0")
    c_in = _FIRST_WIDTH
    for s, width in enumerate(_STAGE_WIDTHS):
      for p in range(LAYERS_PER_STAGE):
        first = p == 0
        stride = _STAGE_STRIDES[s] if first else 1
        f_out = (f - 1) // stride + 1
        cin = c_in if first else width
        for a, k in enumerate(KERNEL_SIZES):
          for b, ex in enumerate(EXPAND_RATIOS):
            per_slot[ri, s * LAYERS_PER_STAGE + p, a, b] = ms(
                f"expanded_conv-input:{f}x{f}x{cin}-output:{f_out}x{f_out}x{width}"
                f"-expand:{round(cin * ex)}-kernel:{k}-stride:{stride}"
                f"-idskip:{0 if first else 1}-se:{_STAGE_SE[s]}-hs:{_STAGE_HS[s]}")
        f = f_out
      c_in = width
    last = _STAGE_WIDTHS[-1]
    fixed[ri] += (ms(f"Conv_1-input:{f}x{f}x{last}-output:{f}x{f}x{_FINAL_EXPAND}")
                  + ms(f"AvgPool2D-input:{f}x{f}x{_FINAL_EXPAND}-output:1x1x{_FINAL_EXPAND}")
                  + ms(f"Conv_2-input:1x1x{_FINAL_EXPAND}-output:1x1x{_FEATURE_MIX}")
                  + ms(f"Logits-input:1x1x{_FEATURE_MIX}-output:{_CLASSES}"))
  return fixed, per_slot


# ---- on mbv3_r genes, pure and jit-able -----------------------------------------------


def _gene_parts(genes: jax.Array):
  """(ks_idx [.., 20], e_idx [.., 20], active bool[.., 20], r_idx [..]) of mbv3_r genes."""
  genes = jnp.asarray(genes, jnp.int32)
  k_idx, e_idx = genes[..., :NUM_SLOTS], genes[..., NUM_SLOTS:2 * NUM_SLOTS]
  depth = jnp.asarray(DEPTHS)[genes[..., 2 * NUM_SLOTS:2 * NUM_SLOTS + NUM_STAGES]]
  pos = jnp.arange(NUM_SLOTS) % LAYERS_PER_STAGE
  active = pos < jnp.repeat(depth, LAYERS_PER_STAGE, axis=-1)
  return k_idx, e_idx, active, genes[..., 2 * NUM_SLOTS + NUM_STAGES]


def encode_genes(genes: jax.Array) -> jax.Array:
  """float32[..., 128]: `encode` of mbv3_r genes (gene indices, resolution last)."""
  k_idx, e_idx, active, r_idx = _gene_parts(genes)
  on = active[..., None].astype(jnp.float32)
  ks = (jax.nn.one_hot(k_idx, len(KERNEL_SIZES)) * on).reshape(k_idx.shape[:-1] + (60,))
  ex = (jax.nn.one_hot(e_idx, len(EXPAND_RATIOS)) * on).reshape(e_idx.shape[:-1] + (60,))
  # 160 is bit 123 of the resolution one-hot (one bit per 16 pixels from 112).
  res = jax.nn.one_hot(r_idx + 3, 8)
  return jnp.concatenate([ks, ex, res], axis=-1)


def accuracy_of_genes(arrays: dict, genes: jax.Array) -> jax.Array:
  """float32[...]: the predictor on mbv3_r genes; `arrays` is `OFAModels.arrays`."""
  h = encode_genes(genes)
  params = arrays["predictor"]
  for i in range(3):
    h = jax.nn.relu(h @ params[f"w{i}"] + params[f"b{i}"])
  return (h @ params["w3"] + params["b3"])[..., 0]


def latency_of_genes(arrays: dict, genes: jax.Array) -> jax.Array:
  """float32[...]: the Note10 table sum on mbv3_r genes, in ms (float32: within
  ~1e-5 ms of the float64 sum of `OFAModels.note10_latency`)."""
  k_idx, e_idx, active, r_idx = _gene_parts(genes)
  slot = arrays["latency_slot"][r_idx[..., None], jnp.arange(NUM_SLOTS), k_idx, e_idx]
  return arrays["latency_fixed"][r_idx] + jnp.sum(jnp.where(active, slot, 0.0), axis=-1)


_FULL_RESOLUTION = len(RESOLUTIONS) - 1


def with_resolution(genes, r_idx: int = _FULL_RESOLUTION):
  """mbv3 genes [..., 45] -> mbv3_r genes [..., 46] at resolution `RESOLUTIONS[r_idx]`
  (numpy in, numpy out; jax in, jax out)."""
  xp = np if isinstance(genes, np.ndarray) else jnp
  genes = xp.asarray(genes)
  r = xp.full(genes.shape[:-1] + (1,), r_idx, genes.dtype)
  return xp.concatenate([genes, r], axis=-1)


@dataclasses.dataclass(frozen=True)
class AtFullResolution:
  """A function of mbv3_r genes as one of mbv3 genes, scored at 224 px."""

  fn: object  # hashable: a static argument under jit

  def __call__(self, arrays, genes):
    return self.fn(arrays, with_resolution(genes))


def genes_to_values(genes: np.ndarray):
  """(ks, e, d, r) in OFA's values from mbv3_r genes int[n, 46] (host)."""
  g = np.atleast_2d(np.asarray(genes))
  ks = np.asarray(KERNEL_SIZES)[g[:, :NUM_SLOTS]]
  e = np.asarray(EXPAND_RATIOS)[g[:, NUM_SLOTS:2 * NUM_SLOTS]]
  d = np.asarray(DEPTHS)[g[:, 2 * NUM_SLOTS:2 * NUM_SLOTS + NUM_STAGES]]
  return ks, e, d, np.asarray(RESOLUTIONS)[g[:, 2 * NUM_SLOTS + NUM_STAGES]]


@dataclasses.dataclass(frozen=True, eq=False)
class OFAModels:
  """OFA's accuracy predictor (params, jitted) and Note10 latency tables (arrays)."""

  params: dict
  latency_fixed: np.ndarray     # float64[5], by resolution
  latency_slot: np.ndarray      # float64[5, 20, 3, 3]

  @classmethod
  @functools.cache
  def from_dir(cls, mbv3_dir: str | Path) -> "OFAModels":
    """Reads `ofa_acc_predictor.npz` and `note10/*_lookup_table.yaml` under `mbv3_dir`."""
    mbv3_dir = Path(mbv3_dir)
    path = mbv3_dir / "ofa_acc_predictor.npz"
    try:
      z = np.load(path)
      if not isinstance(z, np.lib.npyio.NpzFile):  # a lone .npy array under the name
        raise ValueError("not an .npz archive")
      with z:
        arrays = {k: z[k] for k in ("w0", "b0", "w1", "b1", "w2", "b2", "w3", "b3")}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as err:
      # A truncated .npz is a bad zip (or an EOF) to numpy, not an OSError.
      raise DataError(f"cannot read OFA's accuracy predictor {path}: "
                      f"{one_line(err)}") from err
    params = {k: jnp.asarray(a, jnp.float32) for k, a in _checked_mlp(path, arrays).items()}
    fixed, per_slot = _latency_tables(mbv3_dir / "note10")
    return cls(params, fixed, per_slot)

  @functools.cached_property
  def arrays(self) -> dict:
    """The predictor's params and the latency tables as one pytree of jnp arrays, the
    argument of `accuracy_of_genes` / `latency_of_genes` under jit."""
    return {"predictor": self.params,
            "latency_fixed": jnp.asarray(self.latency_fixed, jnp.float32),
            "latency_slot": jnp.asarray(self.latency_slot, jnp.float32)}

  def accuracy(self, ks, e, d, r) -> np.ndarray:
    """float32[n]: predicted top-1 on OFA's holdout set, as a fraction."""
    return np.asarray(_mlp(self.params, jnp.asarray(encode(ks, e, d, r))))

  def note10_latency_extremes(self, resolutions=RESOLUTIONS) -> tuple[float, float]:
    """(fastest, slowest) Note10 latency over every subnet at `resolutions`, in ms, exact.

    The sum separates: each resolution's fixed part, plus per stage the best depth's
    first layers, each at its own best (ks, e).
    """
    r_idx = [_index_of(np.asarray([r]), RESOLUTIONS, "resolution")[0] for r in resolutions]
    out = []
    for pick in (np.min, np.max):
      per_r = []
      for ri in r_idx:
        layer = pick(self.latency_slot[ri].reshape(NUM_SLOTS, -1), axis=-1)
        cum = np.cumsum(layer.reshape(NUM_STAGES, LAYERS_PER_STAGE), axis=-1)
        per_r.append(self.latency_fixed[ri]
                     + pick(cum[:, np.asarray(DEPTHS) - 1], axis=-1).sum())
      out.append(float(pick(per_r)))
    return out[0], out[1]

  def note10_latency(self, ks, e, d, r) -> np.ndarray:
    """float64[n]: the Note10 latency in ms, the tutorial's table sum."""
    k_idx, e_idx, d_idx, r_idx = _check(ks, e, d, r)
    slot = self.latency_slot[r_idx[:, None], np.arange(NUM_SLOTS)[None], k_idx, e_idx]
    return self.latency_fixed[r_idx] + (slot * _active(d_idx)).sum(-1)
