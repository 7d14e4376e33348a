"""The stage-3 surrogate: f(query arch, K measured reference archs) -> score (DESIGN §5).

Three parts, each a module so that callers can cache what does not change:

  ArchEncoder    jraph message passing over the arch's DAG (the stage-1 encoder's
                 layers), read out to one vector per arch;
  TaskEncoder    a set function over the K (arch embedding, standardised score) pairs:
                 DeepSets with masked mean pooling, so it is invariant to the order of
                 the references and to padding, and one model serves K = 1 .. K_max;
  ScoreHead      predicts a query's score standardised like the references'. Beside
                 the task vector it attends from the query over the references (keys
                 from arch embeddings, values from (embedding, score)): a learned kernel
                 regression, which is what a handful of references supports best.

Scores enter standardised within the references (mean 0, std 1), so one model serves
tasks of any unit and direction; callers un-standardise with the same mean and std.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from flax import nnx

from pnag_jax.models.encoder import MessagePassingLayer

# A single reference (or equal scores) has no spread; predictions then sit in the
# references' units around their mean, which is all that can be said. Below a mean of 1
# the floor is relative: a task in tiny units (6e-8 +- 1e-8) still has a spread, while
# float32 cannot resolve a spread of 1e-6 of the mean anyway.
MIN_STD = 1e-6


# log(std / |mean|) is clipped to this range: one reference has no spread at all, and
# scores whose mean is near 0 would otherwise give any size.
LOG_SPREAD_RANGE = (-8.0, 4.0)


def _moments(scores: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(mean, std) of `scores float[..., K]` over the `mask`ed entries, keepdims."""
  w = mask.astype(scores.dtype)
  n = jnp.maximum(w.sum(-1, keepdims=True), 1.0)
  mean = (scores * w).sum(-1, keepdims=True) / n
  var = (((scores - mean) * w) ** 2).sum(-1, keepdims=True) / n
  return mean, jnp.sqrt(var)


def standardise(scores: jax.Array, mask: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
  """(z, mean, std) of `scores float[..., K]` over the `mask`ed entries (std 1 if none)."""
  mean, std = _moments(scores, mask)
  # Equal scores are tested as such: their float32 mean is off by an ulp, so the std
  # computed about it is rounding noise (7.6e-6 at 91.52), which would pass the floor
  # above a mean of 8 and turn every z into +-1.
  hi = jnp.max(jnp.where(mask, scores, -jnp.inf), -1, keepdims=True)
  lo = jnp.min(jnp.where(mask, scores, jnp.inf), -1, keepdims=True)
  flat = (hi <= lo) | (std <= MIN_STD * jnp.minimum(1.0, jnp.abs(mean)))
  std = jnp.where(flat, 1.0, std)
  return (scores - mean) / std * mask.astype(scores.dtype), mean[..., 0], std[..., 0]


def log_spread(scores: jax.Array, mask: jax.Array) -> jax.Array:
  """log(std / |mean|) of the `mask`ed raw scores `float[..., K]`: their relative spread.

  Standardising drops it, and it is what tells some tasks apart: an attack that leaves
  archs a fifth of their accuracy (FGSM at eps 1 on CIFAR-100: 0.27) from one that leaves
  almost none (PGD at eps 4: 2.8), although both rank the same kind of archs at one end.
  Invariant to the scores' unit, as a ratio scale (accuracy, latency) allows; not to an
  offset (error rate for accuracy), so it is an option (`SurrogateConfig.task_spread`).
  """
  mean, std = _moments(scores, mask)
  tiny = jnp.finfo(scores.dtype).tiny
  out = jnp.log(std[..., 0] + tiny) - jnp.log(jnp.abs(mean[..., 0]) + tiny)
  return jnp.clip(out, *LOG_SPREAD_RANGE)


class _MLP(nnx.Module):

  def __init__(self, sizes: tuple[int, ...], *, rngs: nnx.Rngs):
    self.layers = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(sizes, sizes[1:])])

  def __call__(self, x: jax.Array) -> jax.Array:
    for i, layer in enumerate(self.layers):
      x = layer(x)
      if i + 1 < len(self.layers):
        x = jax.nn.gelu(x)
    return x


class ArchEncoder(nnx.Module):
  """Dense arch `(ops[B, N], adj[B, N, N])` -> embedding float32[B, E]."""

  def __init__(self, num_ops: int, num_nodes: int, dim: int, num_layers: int, emb_dim: int,
               *, rngs: nnx.Rngs):
    self.num_nodes, self.dim, self.emb_dim = num_nodes, dim, emb_dim
    self.op_embed = nnx.Embed(num_ops, dim, rngs=rngs)
    # Node positions matter in fixed-DAG spaces (NB201's edge slots are not
    # interchangeable); the flattened readout keeps them apart too.
    self.pos_embed = nnx.Param(jax.random.normal(rngs.params(), (num_nodes, dim)) * 0.02)
    self.layers = nnx.List([MessagePassingLayer(dim, rngs=rngs) for _ in range(num_layers)])
    self.norm = nnx.LayerNorm(dim, rngs=rngs)
    self.readout = nnx.Linear(num_nodes * dim, emb_dim, rngs=rngs)

  def __call__(self, graph, batch: int) -> jax.Array:
    n, c = self.num_nodes, self.dim
    chex.assert_shape(graph.nodes, (batch * n + 1,))
    pos = jnp.concatenate([jnp.tile(self.pos_embed[...], (batch, 1)), jnp.zeros((1, c))], 0)
    h = self.op_embed(graph.nodes) + pos
    for layer in self.layers:
      h = layer(graph, h)
    h = self.norm(h[:-1]).reshape(batch, n * c)
    out = self.readout(h)
    chex.assert_shape(out, (batch, self.emb_dim))
    return out


class TaskEncoder(nnx.Module):
  """K reference pairs -> task vector float32[T]; invariant to order and padding.

  With `spread`, the pooled set also carries the references' `log_spread`.
  """

  def __init__(self, emb_dim: int, hidden: int, task_dim: int, *, spread: bool = False,
               rngs: nnx.Rngs):
    self.spread = spread
    self.phi = _MLP((emb_dim + 1, hidden, hidden), rngs=rngs)
    self.rho = _MLP((hidden + int(spread), hidden, task_dim), rngs=rngs)

  def __call__(self, ref_emb: jax.Array, ref_z: jax.Array, mask: jax.Array,
               spread: jax.Array | None = None) -> jax.Array:
    chex.assert_shape(ref_emb, (*ref_z.shape, None))
    chex.assert_shape(mask, ref_z.shape)
    h = self.phi(jnp.concatenate([ref_emb, ref_z[..., None]], -1))
    w = mask.astype(h.dtype)[..., None]
    pooled = (h * w).sum(-2) / jnp.maximum(w.sum(-2), 1.0)
    if self.spread:
      chex.assert_shape(spread, ref_z.shape[:-1])
      pooled = jnp.concatenate([pooled, spread[..., None]], -1)
    return self.rho(pooled)


def _unit(x: jax.Array) -> jax.Array:
  return x / (jnp.linalg.norm(x, axis=-1, keepdims=True) + 1e-6)


def ridge_fit(feats: jax.Array, z: jax.Array, mask: jax.Array, lam: jax.Array) -> jax.Array:
  """Weights w [F] of ridge regression z ~ feats @ w over the `mask`ed rows of [K, F].

  Solved in the dual, (G + lam I) a = z with G = feats feats^T [K, K], because K (1 to
  50 references) is below the feature width. Padded rows become identity rows with a
  zero target, so their a is exactly 0 and they add nothing to w = feats^T a: the fit
  is the same for any padding.
  """
  m = mask.astype(feats.dtype)
  f = feats * m[:, None]
  gram = f @ f.T + jnp.diag(1.0 - m) + lam * jnp.eye(m.shape[0], dtype=feats.dtype)
  alpha = jnp.linalg.solve(gram, z * m)
  return f.T @ alpha


class ScoreHead(nnx.Module):
  """(query embeddings [Q, E], references, task vector) -> standardised scores [Q]."""

  def __init__(self, emb_dim: int, hidden: int, task_dim: int, *, ridge: bool = False,
               rngs: nnx.Rngs):
    self.query = nnx.Linear(emb_dim, hidden, rngs=rngs)
    self.key = nnx.Linear(emb_dim, hidden, rngs=rngs)
    self.value = _MLP((emb_dim + 1, hidden, hidden), rngs=rngs)
    self.ridge = ridge
    if ridge:
      self.ridge_feats = nnx.Linear(emb_dim, hidden, rngs=rngs)
      # softplus(0.54) = 1: as strong as one reference's own (unit-norm) feature.
      # A strongly typed float32: a weak-typed leaf comes back strong from the first
      # step, and the train step would compile a second time.
      self.ridge_lambda = nnx.Param(jnp.full((), 0.54, jnp.float32))
    estimates = 2 if ridge else 1  # kernel (attention), and ridge
    self.out = _MLP((emb_dim + task_dim + hidden + estimates, hidden, hidden, 1), rngs=rngs)

  def __call__(self, q_emb: jax.Array, ref_emb: jax.Array, ref_z: jax.Array,
               mask: jax.Array, task: jax.Array) -> jax.Array:
    """One task: q_emb [Q, E], ref_emb [K, E], ref_z [K], mask [K], task [T]."""
    hidden = self.query.out_features
    logits = self.query(q_emb) @ self.key(ref_emb).T / jnp.sqrt(hidden)       # [Q, K]
    logits = jnp.where(mask[None, :], logits, -jnp.inf)
    attn = jax.nn.softmax(logits, -1)
    values = self.value(jnp.concatenate([ref_emb, ref_z[:, None]], -1))      # [K, H]
    read = attn @ values
    # The attention-weighted reference score is the kernel-regression estimate itself;
    # handing it to the head directly spares the MLP from rediscovering it.
    estimates = [attn @ ref_z]
    if self.ridge:
      # A linear fit of the references in a learned feature space, in closed form (as
      # in R2-D2's meta-learned ridge head): it extrapolates along directions the K
      # references span, where kernel attention can only interpolate between them.
      # Unit-norm features keep the Gram matrix's scale, and so lambda's, fixed. The
      # fit is redone per call (per query chunk in prediction): a K x K solve, nothing
      # beside encoding the chunk's archs.
      w = ridge_fit(_unit(self.ridge_feats(ref_emb)), ref_z, mask,
                    jax.nn.softplus(self.ridge_lambda[...]))
      ridge_z = _unit(self.ridge_feats(q_emb)) @ w
      estimates.append(ridge_z)
    feats = jnp.concatenate(
        [q_emb, jnp.broadcast_to(task, (q_emb.shape[0], task.shape[-1])), read,
         jnp.stack(estimates, -1)], -1)
    out = self.out(feats)[:, 0]
    # The ridge estimate also enters as a residual: a ranking the head starts from.
    return out + ridge_z if self.ridge else out


class Surrogate(nnx.Module):
  """Arch encoder, task encoder and score head of the stage-3 surrogate."""

  def __init__(self, *, num_ops: int, num_nodes: int, dim: int, num_layers: int,
               emb_dim: int, hidden: int, task_dim: int, ridge: bool = False,
               spread: bool = False, rngs: nnx.Rngs):
    self.arch = ArchEncoder(num_ops, num_nodes, dim, num_layers, emb_dim, rngs=rngs)
    self.task = TaskEncoder(emb_dim, hidden, task_dim, spread=spread, rngs=rngs)
    self.head = ScoreHead(emb_dim, hidden, task_dim, ridge=ridge, rngs=rngs)

  def embed(self, space, genes: jax.Array) -> jax.Array:
    """Genes int[B, G] -> arch embeddings float32[B, E]."""
    ops, adj = space.encode(genes)
    return self.arch(space.graphs_tuple(ops, adj), genes.shape[0])

  def encode_task(self, ref_emb: jax.Array, ref_scores: jax.Array, mask: jax.Array):
    """One task's references -> (standardised scores [K], mean, std, task vector [T])."""
    ref_z, mean, std = standardise(ref_scores, mask)
    return ref_z, mean, std, self.task(ref_emb, ref_z, mask, log_spread(ref_scores, mask))

  def predict(self, q_emb: jax.Array, ref_emb: jax.Array, ref_scores: jax.Array,
              mask: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One task: (standardised predictions [Q], task vector [T]) from embeddings."""
    ref_z, _, _, task = self.encode_task(ref_emb, ref_scores, mask)
    return self.head(q_emb, ref_emb, ref_z, mask, task), task
