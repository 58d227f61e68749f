"""Bias-free denoising networks: no additive constant anywhere, so D(αy) = αD(y) for α > 0.

Every layer is either linear without bias (convolutions, transposed convolutions), positively homogeneous
(ReLU, max-pooling) or a pure rescaling (bias-free batch norm). The network is therefore locally linear,
D(y) = A(y)·y, which is what lets a blind denoiser generalise across noise levels and what the sampler's
σ_t = ‖D(y) − y‖/√N estimate relies on.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class BiasFreeBatchNorm(nn.Module):
    """Batch norm that only divides by a standard deviation and multiplies by a learned scale.

    No mean subtraction, no shift: those are additive constants and would break homogeneity. In eval mode
    it is a fixed per-channel scale γ/σ_running, which the fast path folds into the preceding convolution.
    """

    def __init__(self, channels: int, momentum: float = 0.1, eps: float = 1e-5) -> None:
        super().__init__()
        self.momentum = momentum
        self.eps = eps
        self.gamma = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.register_buffer("running_sd", torch.ones(1, channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        if self.training:
            sd = torch.sqrt(x.float().var(dim=(0, 2, 3), keepdim=True, unbiased=False) + self.eps)
            with torch.no_grad():
                self.running_sd.mul_(1 - self.momentum).add_(self.momentum * sd)
            return x / sd.to(x.dtype) * self.gamma.to(x.dtype)
        return x * (self.gamma / self.running_sd).to(x.dtype)

    def scale(self) -> Tensor:
        """The eval-mode per-channel factor γ/σ_running, shape (channels,)."""
        return (self.gamma / self.running_sd).flatten()


class BFCNN(nn.Module):
    """The reference bias-free CNN (Mohan et al. 2020): 20 layers of 3×3 conv, 64 channels, ReLU,
    bias-free batch norm on layers 2–19, residual output. Receptive field 41×41, ~667k weights."""

    arch_name = "bfcnn"

    def __init__(self, channels: int = 1, width: int = 64, depth: int = 20) -> None:
        super().__init__()
        if depth < 3:
            raise ValueError("BF-CNN needs at least 3 layers")
        self.config: dict[str, Any] = {"channels": channels, "width": width, "depth": depth}
        self.channels = channels
        layers: list[nn.Module] = [
            nn.Conv2d(channels, width, 3, padding=1, bias=False),
            nn.ReLU(inplace=True),
        ]
        for _ in range(depth - 2):
            layers += [
                nn.Conv2d(width, width, 3, padding=1, bias=False),
                BiasFreeBatchNorm(width),
                nn.ReLU(inplace=True),
            ]
        layers.append(nn.Conv2d(width, channels, 3, padding=1, bias=False))
        self.body = nn.Sequential(*layers)

    def forward(self, y: Tensor) -> Tensor:
        return y - self.body(y)


def _conv_stack(cin: int, cout: int, norm: bool, n: int = 2) -> nn.Sequential:
    """``n`` bias-free 3×3 convolutions (the first cin → cout, then cout → cout), each followed by ReLU."""
    layers: list[nn.Module] = []
    for a, b in [(cin, cout)] + [(cout, cout)] * (n - 1):
        layers.append(nn.Conv2d(a, b, 3, padding=1, bias=False))
        if norm:
            layers.append(BiasFreeBatchNorm(b))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class BiasFreeUNet(nn.Module):
    """A bias-free UNet: ``len(widths) − 1`` poolings, two 3×3 conv + ReLU per level, skip connections,
    residual output; optionally ``tail`` more 3×3 conv + ReLU layers at full resolution before the output.

    It reaches ~2^levels further than a flat CNN for a fraction of the FLOPs (most layers run at reduced
    resolution), which helps with large inpainting holes and global structure. Inputs of any size work:
    they are reflection-padded to a multiple of 2^levels (a linear operation, so homogeneity holds) and
    cropped back.
    """

    arch_name = "unet"

    def __init__(
        self,
        channels: int = 1,
        widths: tuple[int, ...] = (48, 96, 192, 256),
        norm: bool = False,
        tail: int = 0,
    ) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) < 2:
            raise ValueError("the UNet needs at least two levels")
        tail = int(tail)
        if tail < 0:
            raise ValueError("the UNet's tail is a number of layers, 0 or more")
        self.config: dict[str, Any] = {"channels": channels, "widths": list(widths), "norm": norm}
        if tail:
            self.config["tail"] = tail
        self.channels = channels
        self.levels = len(widths) - 1
        self.encoders = nn.ModuleList()
        cin = channels
        for w in widths[:-1]:
            self.encoders.append(_conv_stack(cin, w, norm))
            cin = w
        self.bottleneck = _conv_stack(widths[-2], widths[-1], norm)
        self.ups = nn.ModuleList()
        self.decoders = nn.ModuleList()
        below = widths[-1]
        for w in reversed(widths[:-1]):
            self.ups.append(nn.ConvTranspose2d(below, w, 2, stride=2, bias=False))
            self.decoders.append(_conv_stack(2 * w, w, norm))
            below = w
        # Full-resolution depth is what low noise levels need; empty (no weights) unless asked for.
        self.tail = _conv_stack(widths[0], widths[0], norm, tail) if tail else nn.Sequential()
        self.head = nn.Conv2d(widths[0], channels, 1, bias=False)

    def forward(self, y: Tensor) -> Tensor:
        h, w = y.shape[-2:]
        m = 2**self.levels
        ph, pw = (-h) % m, (-w) % m
        x = y
        if ph or pw:
            mode = "reflect" if (h > ph and w > pw) else "replicate"
            x = F.pad(y, (0, pw, 0, ph), mode=mode)
        skips = []
        for enc in self.encoders:
            x = enc(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottleneck(x)
        for up, dec, skip in zip(self.ups, self.decoders, reversed(skips)):
            x = dec(torch.cat([up(x), skip], dim=1))
        noise = self.head(self.tail(x))[..., :h, :w]
        return y - noise


ARCHITECTURES: dict[str, type[nn.Module]] = {"bfcnn": BFCNN, "unet": BiasFreeUNet}


def build_network(arch: str, config: dict[str, Any]) -> nn.Module:
    """Instantiate an architecture by name from its saved configuration."""
    try:
        cls = ARCHITECTURES[arch]
    except KeyError:
        raise ValueError(f"unknown architecture {arch!r}; known: {', '.join(sorted(ARCHITECTURES))}") from None
    kwargs = dict(config)
    if "widths" in kwargs:
        kwargs["widths"] = tuple(kwargs["widths"])
    return cls(**kwargs)


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
