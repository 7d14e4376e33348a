"""The OFA MobileNetV3 subnet of a `ks / e / d` config, as a Flax NNX module.

Mirrors mit-han-lab/once-for-all: `OFAMobileNetV3(width_mult=1.0)` followed by
`set_active_subnet(ks, e, d)` and `get_active_subnet()`, which yields a plain
`MobileNetV3` of

  first conv 3x3/2 -> 16 (BN, h_swish)
  first block: MBConv 3x3, expand 1, 16 -> 16, ReLU, identity shortcut
  5 stages of widths (24, 40, 80, 112, 160), the first `d` of 4 MBConv layers each
  final expand 1x1 160 -> 960 (BN, h_swish)
  global average pool
  feature mix 1x1 960 -> 1280 (no BN, no bias, h_swish)
  dropout, linear classifier.

Every channel count matches OFA's (`make_divisible(., 8)` on the middle and SE
widths), so the parameter count of a subnet equals the PyTorch one: BatchNorm scale
and bias are `nnx.Param`, running statistics `nnx.BatchStat`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from pnag_jax.networks import functional
from pnag_jax.spaces import get_space
from pnag_jax.spaces import mbv3 as mbv3_space

# Five stride-2 steps (first conv and stages 1, 2, 3, 5) take 32 to 1x1. Smaller
# inputs still run (symmetric padding keeps every map at least 1x1), but then the
# late stages only ever see a single pixel, so 32 is the smallest size we accept.
MIN_INPUT_SIZE = 32

FIRST_CONV_WIDTH = 16
STAGE_WIDTHS = (24, 40, 80, 112, 160)
STAGE_STRIDES = (2, 2, 2, 1, 2)
STAGE_ACTS = ("relu", "relu", "h_swish", "h_swish", "h_swish")
STAGE_SE = (False, True, False, True, True)
FINAL_EXPAND_WIDTH = 960
LAST_CHANNEL = 1280
CHANNEL_DIVISIBLE = 8
SE_REDUCTION = 4

# OFA sets every BatchNorm to PyTorch momentum 0.1 (Flax's convention is 1 - that)
# and eps 1e-5; the released supernets train with classifier dropout 0.1.
BN_MOMENTUM = 0.9
BN_EPS = 1e-5
DROPOUT_RATE = 0.1

# OFA's "he_fout" init for convs (normal, std sqrt(2 / (k * k * out))) regardless of
# groups, which is what variance scaling on fan_out gives for Flax's HWIO kernels.
_CONV_INIT = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")


def make_divisible(v: float, divisor: int = CHANNEL_DIVISIBLE) -> int:
  """OFA's (TF slim's) rounding of a width to a multiple of `divisor`.

  Rounds to the nearest multiple, at least `divisor`, and never more than 10% down.
  """
  new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
  if new_v < 0.9 * v:
    new_v += divisor
  return new_v


def h_sigmoid(x: jax.Array) -> jax.Array:
  return jax.nn.relu6(x + 3.0) / 6.0


def h_swish(x: jax.Array) -> jax.Array:
  return x * h_sigmoid(x)


_ACTS = {"relu": jax.nn.relu, "h_swish": h_swish}


def _same_pad(kernel_size: int) -> tuple[tuple[int, int], tuple[int, int]]:
  # PyTorch pads k // 2 on both sides; Flax's "SAME" pads asymmetrically at stride 2,
  # which would shift every strided map by one pixel against the reference.
  p = kernel_size // 2
  return ((p, p), (p, p))


def _conv(in_ch: int, out_ch: int, kernel_size: int, *, rngs: nnx.Rngs, stride: int = 1,
          groups: int = 1, use_bias: bool = False) -> nnx.Conv:
  return nnx.Conv(in_ch, out_ch, (kernel_size, kernel_size), strides=stride,
                  padding=_same_pad(kernel_size), feature_group_count=groups,
                  use_bias=use_bias, kernel_init=_CONV_INIT, rngs=rngs)


def _bn(ch: int, *, rngs: nnx.Rngs) -> nnx.BatchNorm:
  return functional.batch_norm(ch, momentum=BN_MOMENTUM, epsilon=BN_EPS, rngs=rngs)


class ConvBNAct(nnx.Module):
  """Conv (no bias) -> BatchNorm -> activation: OFA's `ConvLayer` with `use_bn`."""

  def __init__(self, in_ch: int, out_ch: int, kernel_size: int, act: str, *,
               rngs: nnx.Rngs, stride: int = 1):
    self.conv = _conv(in_ch, out_ch, kernel_size, stride=stride, rngs=rngs)
    self.bn = _bn(out_ch, rngs=rngs)
    self.act = act

  def __call__(self, x: jax.Array) -> jax.Array:
    return _ACTS[self.act](self.bn(self.conv(x)))


class SqueezeExcite(nnx.Module):
  """OFA's `SEModule`: pool -> 1x1 reduce (bias) -> ReLU -> 1x1 expand (bias) -> h_sigmoid."""

  def __init__(self, channels: int, *, rngs: nnx.Rngs):
    mid = make_divisible(channels // SE_REDUCTION)
    self.reduce = _conv(channels, mid, 1, use_bias=True, rngs=rngs)
    self.expand = _conv(mid, channels, 1, use_bias=True, rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    y = jnp.mean(x, axis=(1, 2), keepdims=True)
    y = self.expand(jax.nn.relu(self.reduce(y)))
    return x * h_sigmoid(y)


class MBConv(nnx.Module):
  """Inverted residual: [1x1 expand] -> depthwise kxk -> [SE] -> 1x1 project.

  The shortcut is the identity when the stride is 1 and the width is unchanged,
  exactly where OFA attaches an `IdentityLayer`; otherwise there is none.
  """

  def __init__(self, in_ch: int, out_ch: int, kernel_size: int, expand_ratio: int,
               stride: int, act: str, use_se: bool, *, rngs: nnx.Rngs):
    self.in_ch, self.out_ch, self.stride = in_ch, out_ch, stride
    # OFA has no expand conv exactly when the ratio is 1 (the first block); then the
    # middle width is the input width, unrounded.
    if expand_ratio == 1:
      mid = in_ch
      self.expand = None
    else:
      mid = make_divisible(round(in_ch * expand_ratio))
      self.expand = ConvBNAct(in_ch, mid, 1, act, rngs=rngs)
    self.depthwise = _conv(mid, mid, kernel_size, stride=stride, groups=mid, rngs=rngs)
    self.depthwise_bn = _bn(mid, rngs=rngs)
    self.se = SqueezeExcite(mid, rngs=rngs) if use_se else None
    self.project = _conv(mid, out_ch, 1, rngs=rngs)
    self.project_bn = _bn(out_ch, rngs=rngs)
    self.act = act
    self.residual = stride == 1 and in_ch == out_ch

  def __call__(self, x: jax.Array) -> jax.Array:
    y = x if self.expand is None else self.expand(x)
    y = _ACTS[self.act](self.depthwise_bn(self.depthwise(y)))
    if self.se is not None:
      y = self.se(y)
    y = self.project_bn(self.project(y))
    return x + y if self.residual else y


def _check_config(config: Mapping[str, Sequence[int]]) -> None:
  for key, choices, length in (("ks", mbv3_space.KERNEL_SIZES, mbv3_space.NUM_LAYERS),
                               ("e", mbv3_space.EXPAND_RATIOS, mbv3_space.NUM_LAYERS),
                               ("d", mbv3_space.DEPTHS, mbv3_space.NUM_STAGES)):
    values = list(config[key])
    if len(values) != length or any(int(v) not in choices for v in values):
      raise ValueError(f"mbv3 config: {key!r} must be {length} values from {choices}, "
                       f"got {values}")


class MobileNetV3Subnet(nnx.Module):
  """An OFA MobileNetV3 subnet; `__call__` maps NHWC images to logits `[B, classes]`."""

  def __init__(self, config: Mapping[str, Sequence[int]], *, num_classes: int,
               in_channels: int = 3, dropout_rate: float = DROPOUT_RATE, rngs: nnx.Rngs):
    """Builds the subnet.

    Args:
      config: OFA dict `{"ks": [20], "e": [20], "d": [5]}`; `ks` and `e` of layers
        past their stage's depth are ignored, as in OFA.
      num_classes: classifier outputs.
      in_channels: input image channels.
      dropout_rate: dropout before the classifier.
      rngs: parameter (and dropout) randomness.
    """
    _check_config(config)
    self.config = {k: [int(v) for v in config[k]] for k in ("ks", "e", "d")}
    self.in_channels, self.num_classes = in_channels, num_classes
    self.first_conv = ConvBNAct(in_channels, FIRST_CONV_WIDTH, 3, "h_swish", stride=2,
                                rngs=rngs)
    blocks = [MBConv(FIRST_CONV_WIDTH, FIRST_CONV_WIDTH, 3, 1, 1, "relu", False, rngs=rngs)]
    ch = FIRST_CONV_WIDTH
    per_stage = mbv3_space.LAYERS_PER_STAGE
    for s, (width, stride, act, se) in enumerate(
        zip(STAGE_WIDTHS, STAGE_STRIDES, STAGE_ACTS, STAGE_SE)):
      for i in range(self.config["d"][s]):
        layer = s * per_stage + i
        blocks.append(MBConv(ch, width, self.config["ks"][layer], self.config["e"][layer],
                             stride if i == 0 else 1, act, se, rngs=rngs))
        ch = width
    self.blocks = nnx.List(blocks)
    self.final_expand = ConvBNAct(ch, FINAL_EXPAND_WIDTH, 1, "h_swish", rngs=rngs)
    self.feature_mix = _conv(FINAL_EXPAND_WIDTH, LAST_CHANNEL, 1, rngs=rngs)
    self.dropout = nnx.Dropout(dropout_rate, rngs=rngs)
    # OFA's linear init: PyTorch's uniform(+-1/sqrt(fan_in)) weights, zero bias.
    self.classifier = nnx.Linear(
        LAST_CHANNEL, num_classes,
        kernel_init=nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"),
        rngs=rngs)

  def __call__(self, x: jax.Array) -> jax.Array:
    b, h, w = x.shape[:3]
    chex.assert_shape(x, (b, h, w, self.in_channels))
    x = self.first_conv(x)
    for block in self.blocks:
      x = block(x)
    x = self.final_expand(x)
    x = jnp.mean(x, axis=(1, 2), keepdims=True)
    x = h_swish(self.feature_mix(x)).reshape(b, LAST_CHANNEL)
    logits = self.classifier(self.dropout(x))
    chex.assert_shape(logits, (b, self.num_classes))
    return logits


def build(genes: Any, *, input_shape: tuple[int, int, int], num_classes: int,
          rngs: nnx.Rngs, dropout_rate: float = DROPOUT_RATE,
          space: str = "mbv3") -> MobileNetV3Subnet:
  """The subnet of mbv3 genes `int[45]` (numpy or jax) for NHWC inputs of `input_shape`.

  `space="mbv3_r"` takes its genes `int[46]`: the resolution gene names the input size
  the subnet was searched at, and the layers do not depend on it, so the network is
  built for whatever `input_shape` the caller runs it at.

  Raises:
    ValueError: the genes are malformed or the input is smaller than MIN_INPUT_SIZE.
  """
  h, w, c = input_shape
  if min(h, w) < MIN_INPUT_SIZE:
    raise ValueError(f"mbv3 needs inputs of at least {MIN_INPUT_SIZE}x{MIN_INPUT_SIZE}, "
                     f"got {h}x{w}")
  genes = np.asarray(genes)
  if space == "mbv3_r":
    config = get_space(space).to_native(genes)
    config.pop("r")
  elif space == "mbv3":
    config = get_space(space).to_native(genes)
  else:
    raise ValueError(f"the MobileNetV3 builder takes spaces mbv3 and mbv3_r, not {space!r}")
  return MobileNetV3Subnet(config, num_classes=num_classes, in_channels=c,
                           dropout_rate=dropout_rate, rngs=rngs)
