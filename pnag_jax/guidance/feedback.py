"""Guidance with feedback: train the best candidate, make it a reference, rank again.

`rank.guided` orders a pool once, from the K references the user measured first. A
user who trains the picks one at a time learns each pick's score as it comes, and the
picks sit at the top of the ranking, where a few uniform references say least.
Handing each measured pick back as a reference (as BANANAS and TNAS feed their
predictors) lets the next choice use it: the surrogate is rebound to K, K + 1, ...
references, which is a forward pass each, and the pool's candidates are rescored. A
long walk binds more references than meta-training's `k_max` (50 in the presets);
the model takes any number, but past `k_max` it runs outside what it was trained on.

The candidates are `rank.candidates`' (one per isomorphism class, no reference, every
constraint met), fixed for the walk; each pick leaves them. The first pick is the
one-shot ranking's first pick, so a walk of length one is `rank.guided` with k = 1.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from pnag_jax.errors import PnagError
from pnag_jax.guidance import rank
from pnag_jax.spaces.base import SearchSpace


@dataclasses.dataclass(frozen=True)
class Walk:
  """The archs trained on the way, in order."""

  genes: np.ndarray       # int32[n, G]
  measured: np.ndarray    # float64[n], what `measure` returned
  predicted: np.ndarray   # float64[n], the surrogate's score for it when it was picked
  candidates: int         # the pool's candidates before the first pick


def walk(space: SearchSpace, bind: Callable, pool: np.ndarray, *, ref_genes: np.ndarray,
         ref_scores: np.ndarray, measure: Callable[[np.ndarray], float], budget: int,
         minimize: bool = False, stop: Callable[[float], bool] | None = None,
         constraints=(), known=None) -> Walk:
  """Trains up to `budget` picks of the strictly valid `pool`, one at a time.

  `bind(genes int[K, G], scores float[K])` returns a predictor (`.scores(genes)`);
  `measure(genes int[G])` trains one arch and returns its score in the references'
  units; the walk ends early when `stop(score)` is true or the candidates run out.
  """
  if budget < 0:
    raise PnagError(f"the feedback budget must be >= 0 trained archs, got {budget}")
  cand, _ = rank.candidates(space, pool, ref_genes=ref_genes, constraints=constraints,
                            known=known)
  num_candidates = int(cand.shape[0])
  genes = [np.asarray(g, np.int32) for g in ref_genes]
  scores = [float(v) for v in ref_scores]
  picked, measured, predicted = [], [], []
  while len(picked) < budget and len(cand):
    pred = bind(np.stack(genes), np.asarray(scores)).scores(cand)
    # The first best on ties, and NaN never best: as the one-shot ranking's stable sort.
    pred = np.where(np.isnan(pred), np.inf if minimize else -np.inf, pred)
    i = int(np.argmin(pred) if minimize else np.argmax(pred))
    pick = cand[i]
    value = float(measure(pick))
    if not np.isfinite(value):
      raise PnagError(f"measuring {space.to_strings(pick[None])[0]} gave {value}; a "
                      "reference needs a finite score")
    picked.append(pick)
    measured.append(value)
    predicted.append(float(pred[i]))
    genes.append(pick)
    scores.append(value)
    cand = np.delete(cand, i, axis=0)
    if stop is not None and stop(value):
      break
  g = np.stack(picked) if picked else np.zeros((0, space.num_genes), np.int32)
  return Walk(g.astype(np.int32), np.asarray(measured, np.float64),
              np.asarray(predicted, np.float64), num_candidates)
