"""The NAS-Bench-201 macro network of a cell, as a Flax NNX module.

Mirrors NB201's evaluation network (`TinyNetwork` built from `InferCell`s in
D-X-Y/AutoDL-Projects, the network behind NAS-Bench-201 / NATS-Bench's topology
space):

  stem: conv 3x3 -> C (no bias), BN
  stage 1: N cells at C
  residual reduction C -> 2C (ResNet basic block, stride 2)
  stage 2: N cells at 2C
  residual reduction 2C -> 4C
  stage 3: N cells at 4C
  BN, ReLU, global average pool, linear classifier.

with C = 16 and N = 5 in the benchmark. A cell has 4 nodes; node j is the sum over
i < j of op_{i->j}(node i), node 0 is the cell input and node 3 its output.

Parameter counts equal the PyTorch ones (and the `params` column of the NB201
tables): BatchNorm scale and bias are `nnx.Param`, running statistics
`nnx.BatchStat`, and convolutions followed by an affine BatchNorm carry no bias.
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from pnag_jax.networks import functional
from pnag_jax.spaces import nb201 as nb201_space

# Two stride-2 reductions take 4 to 1x1. Smaller (and odd) sizes still run, since
# every stride-2 step rounds up, but then the last stages only ever see one pixel.
MIN_INPUT_SIZE = 4

NUM_STAGES = 3

# PyTorch's BatchNorm2d defaults (momentum 0.1 is Flax's 0.9), as in NB201 training.
BN_MOMENTUM = 0.9
BN_EPS = 1e-5

# PyTorch's default conv / linear weight init (kaiming uniform with a = sqrt(5), i.e.
# uniform(+-1/sqrt(fan_in))), which NB201 trains from. Biases start at zero (PyTorch
# draws them uniformly too; with BatchNorm everywhere that hardly matters).
_TORCH_INIT = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def _pad(kernel_size: int) -> tuple[tuple[int, int], tuple[int, int]]:
  # PyTorch pads k // 2 on both sides; Flax's "SAME" pads asymmetrically at stride 2,
  # which would shift every strided map by one pixel against the reference.
  p = kernel_size // 2
  return ((p, p), (p, p))


def _conv(in_ch: int, out_ch: int, kernel_size: int, *, rngs: nnx.Rngs,
          stride: int = 1) -> nnx.Conv:
  return nnx.Conv(in_ch, out_ch, (kernel_size, kernel_size), strides=stride,
                  padding=_pad(kernel_size), use_bias=False, kernel_init=_TORCH_INIT,
                  rngs=rngs)


def _bn(ch: int, *, rngs: nnx.Rngs) -> nnx.BatchNorm:
  return functional.batch_norm(ch, momentum=BN_MOMENTUM, epsilon=BN_EPS, rngs=rngs)


class ReLUConvBN(nnx.Module):
  """ReLU -> conv kxk (no bias, the BN is affine) -> BN."""

  def __init__(self, in_ch: int, out_ch: int, kernel_size: int, *, rngs: nnx.Rngs,
               stride: int = 1):
    self.conv = _conv(in_ch, out_ch, kernel_size, stride=stride, rngs=rngs)
    self.bn = _bn(out_ch, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.bn(self.conv(jax.nn.relu(x)))


class AvgPool3x3(nnx.Module):
  """3x3 average pool, stride 1, padding 1, border windows averaged over real pixels.

  NB201's POOLING uses `count_include_pad=False`; inside a cell input and output
  widths agree, so it has no 1x1 preprocessing conv.
  """

  def __call__(self, x: jax.Array) -> jax.Array:
    return nnx.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)),
                        count_include_pad=False)


class Identity(nnx.Module):

  def __call__(self, x: jax.Array) -> jax.Array:
    return x


def _make_op(name: str, channels: int, *, rngs: nnx.Rngs) -> nnx.Module | None:
  """The module of one cell edge; None for `none` (the edge contributes zero)."""
  if name == "none":
    return None
  if name == "skip_connect":
    return Identity()
  if name == "nor_conv_1x1":
    return ReLUConvBN(channels, channels, 1, rngs=rngs)
  if name == "nor_conv_3x3":
    return ReLUConvBN(channels, channels, 3, rngs=rngs)
  if name == "avg_pool_3x3":
    return AvgPool3x3()
  raise ValueError(f"unknown NB201 op {name!r}; ops are {', '.join(nb201_space.OPS)}")


class Cell(nnx.Module):
  """NB201's `InferCell`: a width-preserving 4-node DAG of 6 edge ops."""

  def __init__(self, op_names: tuple[str, ...], channels: int, *, rngs: nnx.Rngs):
    self.channels = channels
    self.op_names = tuple(op_names)
    # `none` edges get no module at all, exactly like the reference: a zero term
    # changes no sum, so dropping it is the same function with less compute.
    self.edges = tuple(a for a, name in enumerate(self.op_names) if name != "none")
    self.ops = nnx.List([_make_op(self.op_names[a], channels, rngs=rngs) for a in self.edges])

  def __call__(self, x: jax.Array) -> jax.Array:
    nodes = [x]
    for dst in range(1, 4):
      terms = [op(nodes[nb201_space.EDGES[a][0]])
               for a, op in zip(self.edges, self.ops) if nb201_space.EDGES[a][1] == dst]
      # A node without live in-edges is identically zero (the reference sums
      # `Zero` modules, which return x * 0).
      nodes.append(sum(terms[1:], terms[0]) if terms else jnp.zeros_like(x))
    return nodes[-1]


class ResidualReduction(nnx.Module):
  """NB201's `ResNetBasicblock` at stride 2, between stages.

  Main path: ReLU-conv3x3/2-BN, ReLU-conv3x3-BN. Shortcut: 2x2 average pool with
  stride 2, then a 1x1 conv without bias (and without BN).
  """

  def __init__(self, in_ch: int, out_ch: int, *, rngs: nnx.Rngs):
    self.conv_a = ReLUConvBN(in_ch, out_ch, 3, stride=2, rngs=rngs)
    self.conv_b = ReLUConvBN(out_ch, out_ch, 3, rngs=rngs)
    self.shortcut = _conv(in_ch, out_ch, 1, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    h, w = x.shape[1:3]
    # The strided conv rounds an odd size up, the reference's floor-mode pool rounds
    # it down (and PyTorch then fails to add them). Padding the pool's far edge (not
    # counted in the average) rounds it up too; even sizes are unchanged.
    pooled = nnx.avg_pool(x, (2, 2), strides=(2, 2), padding=((0, h % 2), (0, w % 2)),
                          count_include_pad=False)
    return self.conv_b(self.conv_a(x)) + self.shortcut(pooled)


class TinyNetwork(nnx.Module):
  """The NB201 network of one cell; `__call__` maps NHWC images to logits `[B, classes]`.

  Modules start in training mode (batch statistics in BatchNorm), as in PyTorch;
  call `.eval()` for inference with running statistics.
  """

  def __init__(self, op_names: tuple[str, ...], *, num_classes: int, in_channels: int = 3,
               channels: int = 16, cells_per_stage: int = 5, rngs: nnx.Rngs):
    """Builds the network.

    Args:
      op_names: the 6 edge ops in NB201 order e01, e02, e12, e03, e13, e23.
      num_classes: classifier outputs.
      in_channels: input image channels.
      channels: stem and first-stage width C (stages run at C, 2C, 4C).
      cells_per_stage: N, cells per stage.
      rngs: parameter randomness.
    """
    if len(op_names) != nb201_space.NUM_EDGES:
      raise ValueError(f"NB201 cells have {nb201_space.NUM_EDGES} edge ops, got {op_names}")
    if channels < 1 or cells_per_stage < 0:
      raise ValueError(f"NB201 needs channels >= 1 and cells_per_stage >= 0, got "
                       f"{channels} and {cells_per_stage}")
    self.op_names = tuple(op_names)
    self.in_channels, self.num_classes = in_channels, num_classes
    self.stem_conv = _conv(in_channels, channels, 3, rngs=rngs)
    self.stem_bn = _bn(channels, rngs=rngs)
    layers = []
    ch = channels
    for stage in range(NUM_STAGES):
      if stage:
        layers.append(ResidualReduction(ch, 2 * ch, rngs=rngs))
        ch *= 2
      layers.extend(Cell(self.op_names, ch, rngs=rngs) for _ in range(cells_per_stage))
    self.layers = nnx.List(layers)
    self.out_channels = ch
    self.last_bn = _bn(ch, rngs=rngs)
    self.classifier = nnx.Linear(ch, num_classes, kernel_init=_TORCH_INIT, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    b, h, w = x.shape[:3]
    chex.assert_shape(x, (b, h, w, self.in_channels))
    x = self.stem_bn(self.stem_conv(x))
    for layer in self.layers:
      x = layer(x)
    x = jax.nn.relu(self.last_bn(x))
    x = jnp.mean(x, axis=(1, 2))
    chex.assert_shape(x, (b, self.out_channels))
    logits = self.classifier(x)
    chex.assert_shape(logits, (b, self.num_classes))
    return logits


def op_names_of_genes(genes: Any) -> tuple[str, ...]:
  """NB201 genes `int[6]` (numpy or jax) to the 6 edge op names.

  Raises:
    ValueError: not 6 op ids in range.
  """
  g = np.asarray(genes).reshape(-1)
  if g.shape != (nb201_space.NUM_EDGES,) or not np.issubdtype(g.dtype, np.integer) or \
      not ((g >= 0) & (g < len(nb201_space.OPS))).all():
    raise ValueError(f"NB201 genes must be {nb201_space.NUM_EDGES} ints in "
                     f"[0, {len(nb201_space.OPS)}), got {g.tolist()}")
  return tuple(nb201_space.OPS[int(i)] for i in g)


def build(genes: Any, *, input_shape: tuple[int, int, int], num_classes: int,
          rngs: nnx.Rngs, channels: int = 16, cells_per_stage: int = 5) -> TinyNetwork:
  """The NB201 network of `genes` (`int[6]`, numpy or jax) for NHWC `input_shape`.

  Raises:
    ValueError: the genes are malformed or the input is smaller than MIN_INPUT_SIZE.
  """
  h, w, c = input_shape
  if min(h, w) < MIN_INPUT_SIZE:
    raise ValueError(f"nb201 needs inputs of at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE}, "
                     f"got {h}x{w}")
  return TinyNetwork(op_names_of_genes(genes), num_classes=num_classes, in_channels=c,
                     channels=channels, cells_per_stage=cells_per_stage, rngs=rngs)
