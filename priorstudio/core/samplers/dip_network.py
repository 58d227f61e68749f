"""The Deep Image Prior "skip" encoder-decoder and its fixed input code.

The reference network (Ulyanov, Vedaldi, Lempitsky): at every scale an encoder branch (strided 3×3 conv,
3×3 conv) goes one level deeper and comes back up by bilinear upsampling, while a thin 1×1 "skip" branch
(4 channels) keeps the current resolution; the two are concatenated, normalised and mixed by a 3×3 and a
1×1 convolution. Every convolution is followed by batch norm and LeakyReLU(0.2), borders are reflected, and
a sigmoid maps the output into [0, 1]. With 5 scales of 128 channels and a 32-channel input this is
≈2.2 M weights; ``width``/``depth`` make tiny versions for tests and quick demos.

Odd sizes work: a strided convolution gives ⌈n/2⌉ rows and the upsampling goes back to the exact size of
the skip branch, so no cropping of the image is needed. The deepest level must keep at least 2×2 pixels
(batch norm needs more than one value per channel, and reflection needs a row beyond the padding), so
min(H, W) > 2^depth: 33×33 works with 5 scales, 32×32 does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from priorstudio.core.errors import ParameterError


class ReflectConv2d(nn.Conv2d):
    """A convolution over reflection-padded borders that, under autocast, pads in the autocast dtype.

    Why: CPU autocast runs reflection padding in fp32, so every 3×3 convolution of the bf16 fast path cast its
    input up, padded it and cast it back down (at 256² a third of a step went to those copies and to the fp32
    pad's backward). Padding only moves values, so padding the bf16 tensor gives the convolution exactly the
    input it got before. Without autocast (the plain reference) this is ``nn.Conv2d`` unchanged, and the
    weights and their names are those of ``nn.Conv2d``.
    """

    def forward(self, x: Tensor) -> Tensor:
        device = x.device.type
        if not torch.is_autocast_enabled(device):
            return super().forward(x)
        dtype = torch.get_autocast_dtype(device)
        bias = None if self.bias is None else self.bias.to(dtype)
        with torch.autocast(device, enabled=False):
            padded = F.pad(x.to(dtype), self._reversed_padding_repeated_twice, mode="reflect")
            return F.conv2d(padded, self.weight.to(dtype), bias, self.stride, 0, self.dilation, self.groups)


class _NHWCGradient(torch.autograd.Function):
    """Identity that hands on channels-last tensors both ways.

    Why: the backward of a concatenation gives each branch a channel slice of the gradient, contiguous in
    neither layout, and bilinear upsampling's backward then takes a slow generic kernel (~60 ms instead of ~9
    at 256², per step); a copy into channels-last costs a few ms. The forward copy also keeps the
    concatenation itself channels-last, which it otherwise is not.
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:
        return x.clone(memory_format=torch.channels_last)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:
        return grad.contiguous(memory_format=torch.channels_last)


def _is_nhwc(x: Tensor) -> bool:
    """True for a 4-D tensor laid out channels-last (and not also plain contiguous, as 1-channel ones are)."""
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _conv(c_in: int, c_out: int, k: int, stride: int = 1) -> nn.Conv2d:
    if k > 1:
        return ReflectConv2d(c_in, c_out, k, stride=stride, padding=k // 2, padding_mode="reflect")
    return nn.Conv2d(c_in, c_out, k, stride=stride)


def _conv_bn_act(c_in: int, c_out: int, k: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(_conv(c_in, c_out, k, stride), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2, inplace=True))


class SkipLevel(nn.Module):
    """One scale: ``skip`` at this resolution, ``down`` → ``deeper`` → upsample, then concat → ``mix``."""

    def __init__(self, c_in: int, down: int, skip: int, up: int, deeper: nn.Module | None, deeper_out: int) -> None:
        super().__init__()
        self.skip = _conv_bn_act(c_in, skip, 1) if skip > 0 else None
        self.down = nn.Sequential(_conv_bn_act(c_in, down, 3, stride=2), _conv_bn_act(down, down, 3))
        self.deeper = deeper
        c_cat = skip + (deeper_out if deeper is not None else down)
        self.mix = nn.Sequential(nn.BatchNorm2d(c_cat), _conv_bn_act(c_cat, up, 3), _conv_bn_act(up, up, 1))

    def forward(self, x: Tensor) -> Tensor:
        d = self.down(x)
        if self.deeper is not None:
            d = self.deeper(d)
        d = F.interpolate(d, size=x.shape[-2:], mode="bilinear", align_corners=False)
        if _is_nhwc(x):  # the fast path's layout: keep the upsampling's gradient and the concatenation in it
            d = _NHWCGradient.apply(d)
        if self.skip is not None:
            d = torch.cat((self.skip(x), d), dim=1)
        return self.mix(d)


class SkipNet(nn.Module):
    """The DIP "skip" network: (B, in_channels, H, W) code → (B, out_channels, H, W) image in (0, 1)."""

    def __init__(
        self,
        in_channels: int = 32,
        out_channels: int = 3,
        down: Sequence[int] = (128,) * 5,
        up: Sequence[int] = (128,) * 5,
        skip: Sequence[int] = (4,) * 5,
    ) -> None:
        super().__init__()
        if not (len(down) == len(up) == len(skip)) or len(down) < 1:
            raise ParameterError("the skip network needs as many down, up and skip widths, at least one scale")
        self.in_channels, self.out_channels, self.depth = in_channels, out_channels, len(down)
        ins = [in_channels, *down[:-1]]
        level: nn.Module | None = None
        for i in reversed(range(len(down))):
            deeper_out = up[i + 1] if i + 1 < len(down) else down[i]
            level = SkipLevel(ins[i], down[i], skip[i], up[i], level, deeper_out)
        self.body = level
        self.head = nn.Conv2d(up[0], out_channels, 1)

    def forward(self, z: Tensor) -> Tensor:
        return torch.sigmoid(self.head(self.body(z)))

    def check_size(self, hw: tuple[int, int]) -> None:
        """Refuse images too small for this depth (the deepest level needs at least 2×2 pixels)."""
        need = 2**self.depth + 1
        if min(hw) < need:
            raise ParameterError(
                f"a DIP network with {self.depth} scales needs images of at least {need}×{need} pixels, "
                f"got {hw[0]}×{hw[1]}; use fewer scales (depth) or a larger image"
            )


def skip_network(
    in_channels: int = 32, out_channels: int = 3, width: int = 128, depth: int = 5, skip_channels: int = 4
) -> SkipNet:
    """The reference network (defaults: ≈2.2 M weights) or a smaller one of the same shape."""
    if width < 1 or depth < 1 or skip_channels < 0:
        raise ParameterError("DIP network: width and depth must be ≥ 1 and skip channels ≥ 0")
    return SkipNet(in_channels, out_channels, (width,) * depth, (width,) * depth, (skip_channels,) * depth)


def input_code(
    channels: int, hw: tuple[int, int], seed: int, scale: float = 0.1, dtype: torch.dtype = torch.float32
) -> Tensor:
    """The fixed network input z: uniform noise in [0, scale), (1, channels, H, W), from ``seed``."""
    gen = torch.Generator().manual_seed(int(seed))
    return torch.rand((1, channels, *hw), generator=gen, dtype=dtype) * scale


def count_weights(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
