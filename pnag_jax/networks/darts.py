"""The DARTS evaluation network for CIFAR of a genotype, as a Flax NNX module.

Mirrors `NetworkCIFAR` of quark0/darts (`cnn/model.py`, `cnn/operations.py`):

  stem: conv 3x3 -> 3C (no bias), BN
  `layers` cells; those at layers // 3 and 2 * layers // 3 are reduction cells,
    which halve the resolution and double the width (C = `init_channels` at first)
  [auxiliary head on the output of cell 2 * layers // 3]
  global average pool, linear classifier.

A cell reads the outputs of the two previous cells, c_{k-2} and c_{k-1}, through a
1x1 ReLU-conv-BN each (c_{k-2} through a FactorizedReduce when the previous cell
was a reduction, to match resolutions). Each of its 4 intermediate nodes sums two
ops applied to earlier states; the output concatenates nodes [2, 3, 4, 5]. In a
reduction cell the ops reading c_{k-2} or c_{k-1} have stride 2.

Parameter counts equal the PyTorch ones: BatchNorm scale and bias are `nnx.Param`,
running statistics `nnx.BatchStat`; convolutions carry no bias, and the auxiliary
head is part of the module only when asked for (DARTS' `count_parameters_in_MB`
leaves it out too).
"""

from __future__ import annotations

from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from pnag_jax.networks import functional
from pnag_jax.spaces import darts as darts_space

# Two stride-2 reductions take 4 to 1x1. Smaller (and odd) sizes still run, since
# every stride-2 step rounds up, but then the last cells only ever see one pixel.
MIN_INPUT_SIZE = 4
# DARTS' auxiliary head assumes the 8x8 maps of a 32x32 input (5x5/3 pool -> 2x2,
# 2x2 conv -> 1x1).
MIN_INPUT_SIZE_AUXILIARY = 32

STEM_MULTIPLIER = 3

# PyTorch's BatchNorm2d defaults (momentum 0.1 is Flax's 0.9), as in DARTS training.
BN_MOMENTUM = 0.9
BN_EPS = 1e-5

# PyTorch's default conv / linear weight init (kaiming uniform with a = sqrt(5), i.e.
# uniform(+-1/sqrt(fan_in))), which DARTS trains from; Flax's HWIO depthwise kernels
# give the same fan-in as PyTorch's grouped ones. Biases start at zero.
_TORCH_INIT = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def _conv(in_ch: int, out_ch: int, kernel_size: int, *, rngs: nnx.Rngs, stride: int = 1,
          padding: int = 0, dilation: int = 1, groups: int = 1) -> nnx.Conv:
  # Explicit symmetric padding as in PyTorch; Flax's "SAME" pads asymmetrically at
  # stride 2, which would shift every strided map by one pixel against the reference.
  return nnx.Conv(in_ch, out_ch, (kernel_size, kernel_size), strides=stride,
                  padding=((padding, padding), (padding, padding)),
                  kernel_dilation=dilation, feature_group_count=groups, use_bias=False,
                  kernel_init=_TORCH_INIT, rngs=rngs)


def _bn(ch: int, *, rngs: nnx.Rngs) -> nnx.BatchNorm:
  return functional.batch_norm(ch, momentum=BN_MOMENTUM, epsilon=BN_EPS, rngs=rngs)


# ---- operations -------------------------------------------------------------------


class ReLUConvBN(nnx.Module):
  """ReLU -> conv kxk (no bias) -> BN."""

  def __init__(self, in_ch: int, out_ch: int, kernel_size: int, *, rngs: nnx.Rngs,
               stride: int = 1, padding: int = 0):
    self.conv = _conv(in_ch, out_ch, kernel_size, stride=stride, padding=padding, rngs=rngs)
    self.bn = _bn(out_ch, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.bn(self.conv(jax.nn.relu(x)))


class DilConv(nnx.Module):
  """ReLU -> depthwise kxk (dilated) -> pointwise 1x1 -> BN."""

  def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int, padding: int,
               dilation: int, *, rngs: nnx.Rngs):
    self.depthwise = _conv(in_ch, in_ch, kernel_size, stride=stride, padding=padding,
                           dilation=dilation, groups=in_ch, rngs=rngs)
    self.pointwise = _conv(in_ch, out_ch, 1, rngs=rngs)
    self.bn = _bn(out_ch, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.bn(self.pointwise(self.depthwise(jax.nn.relu(x))))


class SepConv(nnx.Module):
  """Two stacked DilConvs without dilation; only the first one is strided."""

  def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int, padding: int,
               *, rngs: nnx.Rngs):
    self.first = DilConv(in_ch, in_ch, kernel_size, stride, padding, 1, rngs=rngs)
    self.second = DilConv(in_ch, out_ch, kernel_size, 1, padding, 1, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    return self.second(self.first(x))


class FactorizedReduce(nnx.Module):
  """ReLU -> two 1x1/2 convs on pixel grids offset by one -> concat -> BN.

  Halves the resolution without dropping every other pixel. The reference feeds the
  second conv `x[:, 1:, 1:]`, which for odd sizes yields one row fewer than the
  first; padding the far edge by one first gives the same pixels for even sizes and
  matching shapes (rounded up) for odd ones.
  """

  def __init__(self, in_ch: int, out_ch: int, *, rngs: nnx.Rngs):
    if out_ch % 2:
      raise ValueError(f"FactorizedReduce needs an even output width, got {out_ch}")
    self.conv_1 = _conv(in_ch, out_ch // 2, 1, stride=2, rngs=rngs)
    self.conv_2 = _conv(in_ch, out_ch // 2, 1, stride=2, rngs=rngs)
    self.bn = _bn(out_ch, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    x = jax.nn.relu(x)
    shifted = jnp.pad(x, ((0, 0), (0, 1), (0, 1), (0, 0)))[:, 1:, 1:]
    return self.bn(jnp.concatenate([self.conv_1(x), self.conv_2(shifted)], axis=-1))


class Pool3x3(nnx.Module):
  """3x3 max or average pool, padding 1; averages count real pixels only."""

  def __init__(self, kind: str, stride: int):
    self.kind, self.stride = kind, stride

  def __call__(self, x: jax.Array) -> jax.Array:
    s, pad = (self.stride, self.stride), ((1, 1), (1, 1))
    if self.kind == "max":
      return nnx.max_pool(x, (3, 3), strides=s, padding=pad)
    return nnx.avg_pool(x, (3, 3), strides=s, padding=pad, count_include_pad=False)


class Identity(nnx.Module):

  def __call__(self, x: jax.Array) -> jax.Array:
    return x


class Zero(nnx.Module):
  """`none`: zeros at the op's output resolution (rounded up, like the other ops)."""

  def __init__(self, stride: int):
    self.stride = stride

  def __call__(self, x: jax.Array) -> jax.Array:
    return jnp.zeros_like(x[:, ::self.stride, ::self.stride])


def make_op(name: str, channels: int, stride: int, *, rngs: nnx.Rngs) -> nnx.Module:
  """The module of DARTS primitive `name` at width `channels` (in = out)."""
  c = channels
  if name == "none":
    return Zero(stride)
  if name == "max_pool_3x3":
    return Pool3x3("max", stride)
  if name == "avg_pool_3x3":
    return Pool3x3("avg", stride)
  if name == "skip_connect":
    return Identity() if stride == 1 else FactorizedReduce(c, c, rngs=rngs)
  if name == "sep_conv_3x3":
    return SepConv(c, c, 3, stride, 1, rngs=rngs)
  if name == "sep_conv_5x5":
    return SepConv(c, c, 5, stride, 2, rngs=rngs)
  if name == "dil_conv_3x3":
    return DilConv(c, c, 3, stride, 2, 2, rngs=rngs)
  if name == "dil_conv_5x5":
    return DilConv(c, c, 5, stride, 4, 2, rngs=rngs)
  raise ValueError(f"unknown DARTS op {name!r}; ops are {', '.join(darts_space.PRIMITIVES)}")


# ---- drop path --------------------------------------------------------------------


class DropPathRate(nnx.Variable):
  """The drop-path probability: state, so a per-epoch schedule does not recompile."""


class DropPath(nnx.Module):
  """Zeroes whole examples of an op's output with probability `rate` (training only).

  DARTS' `drop_path`: keep each example with probability 1 - rate and scale kept
  ones by 1 / (1 - rate). One instance (rate and random stream) is shared by all
  cells of a network. `.train()` / `.eval()` switch it through `deterministic`.
  """

  def __init__(self, rate: float, *, rngs: nnx.Rngs):
    self.rate = DropPathRate(jnp.asarray(rate, jnp.float32))
    self.deterministic = False
    # nnx.Rngs(seed) answers any stream name from its default stream; one with
    # named streams only may have no "dropout" stream, which should not stop a build.
    try:
      self.rngs = rngs["dropout"].fork()
    except KeyError:
      self.rngs = rngs["params"].fork()

  def __call__(self, x: jax.Array) -> jax.Array:
    if self.deterministic:
      return x
    keep = 1.0 - self.rate[...]
    mask = jax.random.bernoulli(self.rngs(), keep, (x.shape[0],) + (1,) * (x.ndim - 1))
    return jnp.where(mask, x / keep, jnp.zeros_like(x))


# ---- cells and network ------------------------------------------------------------


class Cell(nnx.Module):
  """A DARTS normal or reduction cell of a genotype's (op, input) pairs."""

  def __init__(self, pairs: list[tuple[str, int]], concat: list[int], c_prev_prev: int,
               c_prev: int, channels: int, *, reduction: bool, reduction_prev: bool,
               drop_path: DropPath, rngs: nnx.Rngs):
    if reduction_prev:
      self.preprocess0 = FactorizedReduce(c_prev_prev, channels, rngs=rngs)
    else:
      self.preprocess0 = ReLUConvBN(c_prev_prev, channels, 1, rngs=rngs)
    self.preprocess1 = ReLUConvBN(c_prev, channels, 1, rngs=rngs)
    self.reduction = reduction
    self.op_names = tuple(name for name, _ in pairs)
    self.indices = tuple(int(i) for _, i in pairs)
    self.concat = tuple(int(i) for i in concat)
    self.out_channels = len(self.concat) * channels
    ops, dropped = [], []
    for name, index in pairs:
      stride = 2 if reduction and index < 2 else 1
      ops.append(make_op(name, channels, stride, rngs=rngs))
      # As in DARTS, drop path spares identities (not a strided skip's FactorizedReduce).
      dropped.append(not isinstance(ops[-1], Identity))
    self.ops = nnx.List(ops)
    self.dropped = tuple(dropped)
    self.drop_path = drop_path

  def __call__(self, s0: jax.Array, s1: jax.Array) -> jax.Array:
    states = [self.preprocess0(s0), self.preprocess1(s1)]
    for step in range(len(self.ops) // 2):
      node = 0
      for p in (2 * step, 2 * step + 1):
        h = self.ops[p](states[self.indices[p]])
        node = node + (self.drop_path(h) if self.dropped[p] else h)
      states.append(node)
    return jnp.concatenate([states[i] for i in self.concat], axis=-1)


class AuxiliaryHead(nnx.Module):
  """DARTS' `AuxiliaryHeadCIFAR` on the 8x8 maps after the second reduction.

  ReLU, 5x5/3 average pool (2x2), 1x1 conv -> 128, BN, ReLU, 2x2 conv -> 768, BN,
  ReLU, linear. A global mean before the linear layer is a no-op on the reference's
  1x1 maps and lets larger inputs through.
  """

  def __init__(self, channels: int, num_classes: int, *, rngs: nnx.Rngs):
    self.conv1 = _conv(channels, 128, 1, rngs=rngs)
    self.bn1 = _bn(128, rngs=rngs)
    self.conv2 = _conv(128, 768, 2, rngs=rngs)
    self.bn2 = _bn(768, rngs=rngs)
    self.classifier = nnx.Linear(768, num_classes, kernel_init=_TORCH_INIT, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    # No padding, so counting pads or not is moot.
    x = nnx.avg_pool(jax.nn.relu(x), (5, 5), strides=(3, 3))
    x = jax.nn.relu(self.bn1(self.conv1(x)))
    x = jax.nn.relu(self.bn2(self.conv2(x)))
    return self.classifier(jnp.mean(x, axis=(1, 2)))


class NetworkCIFAR(nnx.Module):
  """The DARTS CIFAR network; `__call__` maps NHWC images to logits `[B, classes]`.

  `__call__` always returns the main logits only, in both modes; training with the
  auxiliary loss uses `forward_with_aux`, which computes both heads in one pass.
  Modules start in training mode (batch statistics, drop path), as in PyTorch; call
  `.eval()` for inference. `set_drop_path_prob` updates the drop-path rate (DARTS
  ramps it linearly over epochs) without changing the graph.
  """

  def __init__(self, genotype: darts_space.Genotype, *, num_classes: int,
               in_channels: int = 3, init_channels: int = 36, layers: int = 20,
               auxiliary: bool = False, drop_path_prob: float = 0.0, rngs: nnx.Rngs):
    """Builds the network.

    Args:
      genotype: normal and reduce cells as lists of 8 (op name, input) pairs, with
        their concat lists.
      num_classes: classifier outputs.
      in_channels: input image channels.
      init_channels: C, the width of the first cells (the stem has 3C).
      layers: number of cells.
      auxiliary: whether to build the auxiliary head (see `forward_with_aux`).
      drop_path_prob: initial drop-path probability.
      rngs: parameter and drop-path randomness.
    """
    if layers < 1 or init_channels < 1:
      raise ValueError(f"DARTS needs layers >= 1 and init_channels >= 1, got {layers} "
                       f"and {init_channels}")
    # Tuples only: static attributes end up in the hashable graph definition.
    self.genotype = darts_space.Genotype(
        normal=tuple((str(n), int(i)) for n, i in genotype.normal),
        normal_concat=tuple(int(i) for i in genotype.normal_concat),
        reduce=tuple((str(n), int(i)) for n, i in genotype.reduce),
        reduce_concat=tuple(int(i) for i in genotype.reduce_concat))
    self.in_channels, self.num_classes = in_channels, num_classes
    self.layers, self.auxiliary = layers, auxiliary
    c_curr = STEM_MULTIPLIER * init_channels
    self.stem_conv = _conv(in_channels, c_curr, 3, padding=1, rngs=rngs)
    self.stem_bn = _bn(c_curr, rngs=rngs)
    self.drop_path = DropPath(_check_rate(drop_path_prob), rngs=rngs)
    self.reductions = (layers // 3, 2 * layers // 3)
    self.aux_index = 2 * layers // 3
    c_prev_prev, c_prev, c_curr = c_curr, c_curr, init_channels
    cells, reduction_prev, c_aux = [], False, None
    for i in range(layers):
      reduction = i in self.reductions
      if reduction:
        c_curr *= 2
      pairs, concat = ((genotype.reduce, genotype.reduce_concat) if reduction else
                       (genotype.normal, genotype.normal_concat))
      cell = Cell(pairs, concat, c_prev_prev, c_prev, c_curr, reduction=reduction,
                  reduction_prev=reduction_prev, drop_path=self.drop_path, rngs=rngs)
      cells.append(cell)
      reduction_prev = reduction
      c_prev_prev, c_prev = c_prev, cell.out_channels
      if i == self.aux_index:
        c_aux = c_prev
    self.cells = nnx.List(cells)
    self.out_channels = c_prev
    self.auxiliary_head = AuxiliaryHead(c_aux, num_classes, rngs=rngs) if auxiliary else None
    self.classifier = nnx.Linear(c_prev, num_classes, kernel_init=_TORCH_INIT, rngs=rngs)

  def set_drop_path_prob(self, rate: float) -> None:
    self.drop_path.rate[...] = jnp.asarray(_check_rate(rate), jnp.float32)

  def _forward(self, x: jax.Array, with_aux: bool) -> tuple[jax.Array, jax.Array | None]:
    b, h, w = x.shape[:3]
    chex.assert_shape(x, (b, h, w, self.in_channels))
    s0 = s1 = self.stem_bn(self.stem_conv(x))
    aux_logits = None
    for i, cell in enumerate(self.cells):
      s0, s1 = s1, cell(s0, s1)
      if with_aux and i == self.aux_index:
        aux_logits = self.auxiliary_head(s1)
        chex.assert_shape(aux_logits, (b, self.num_classes))
    x = jnp.mean(s1, axis=(1, 2))
    chex.assert_shape(x, (b, self.out_channels))
    logits = self.classifier(x)
    chex.assert_shape(logits, (b, self.num_classes))
    return logits, aux_logits

  def __call__(self, x: jax.Array) -> jax.Array:
    return self._forward(x, with_aux=False)[0]

  def forward_with_aux(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(logits, auxiliary logits), each `[B, classes]`, from one pass.

    Raises:
      ValueError: the network was built without `auxiliary=True`.
    """
    if self.auxiliary_head is None:
      raise ValueError("this DARTS network has no auxiliary head; build it with "
                       "auxiliary=True")
    return self._forward(x, with_aux=True)  # type: ignore[return-value]


def _check_rate(rate: float) -> float:
  # A rate of 1 would divide by a zero keep probability (NaN gradients).
  if not 0.0 <= float(rate) < 1.0:
    raise ValueError(f"drop_path_prob must be in [0, 1), got {rate}")
  return float(rate)


def genotype_of(genes: Any) -> darts_space.Genotype:
  """Genes `int[32]` (numpy or jax) or a `Genotype` to a checked `Genotype`.

  Raises:
    ValueError: unknown ops, a node reading itself or a later node, or a concat of
      anything but intermediate nodes.
  """
  if isinstance(genes, tuple) and hasattr(genes, "_fields"):
    genotype = darts_space.Genotype(*genes)
  else:
    genotype = darts_space.to_native(np.asarray(genes))  # checks length and ranges
  for cell in darts_space.CELLS:
    pairs = list(getattr(genotype, cell))
    concat = list(getattr(genotype, f"{cell}_concat"))
    if len(pairs) % 2 or not pairs:
      raise ValueError(f"DARTS {cell} cell needs an even, nonzero number of pairs, "
                       f"got {len(pairs)}")
    for p, (name, index) in enumerate(pairs):
      if name not in darts_space.PRIMITIVES:
        raise ValueError(f"unknown DARTS op {name!r} in the {cell} cell; ops are "
                         f"{', '.join(darts_space.PRIMITIVES)}")
      if not 0 <= int(index) < 2 + p // 2:
        raise ValueError(f"DARTS {cell} cell pair {p} (node {2 + p // 2}) reads state "
                         f"{index}; it may read 0..{1 + p // 2}")
    if not concat or any(not 2 <= int(i) < 2 + len(pairs) // 2 for i in concat):
      raise ValueError(f"DARTS {cell}_concat must list intermediate nodes 2.."
                       f"{1 + len(pairs) // 2}, got {concat}")
  return genotype


def min_input_size(auxiliary: bool = False, **unused_kwargs) -> int:
  """The smallest H = W `build` accepts with these keyword arguments."""
  return MIN_INPUT_SIZE_AUXILIARY if auxiliary else MIN_INPUT_SIZE


def build(genes: Any, *, input_shape: tuple[int, int, int], num_classes: int,
          rngs: nnx.Rngs, init_channels: int = 36, layers: int = 20,
          auxiliary: bool = False, drop_path_prob: float = 0.0) -> NetworkCIFAR:
  """The DARTS CIFAR network of `genes` (`int[32]`, numpy or jax, or a `Genotype`).

  Raises:
    ValueError: the genes are malformed or the input is smaller than the minimum.
  """
  h, w, c = input_shape
  need = min_input_size(auxiliary)
  if min(h, w) < need:
    raise ValueError(f"darts{' with auxiliary head' if auxiliary else ''} needs inputs "
                     f"of at least {need}x{need}, got {h}x{w}")
  return NetworkCIFAR(genotype_of(genes), num_classes=num_classes, in_channels=c,
                      init_channels=init_channels, layers=layers, auxiliary=auxiliary,
                      drop_path_prob=drop_path_prob, rngs=rngs)
