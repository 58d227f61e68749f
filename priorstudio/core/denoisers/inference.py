"""The fast inference path: fold batch norm, fuse each ReLU into its convolution, channels_last, bf16 autocast
where the CPU has it.

On this class of CPU (AMX-bf16) a 20×64 BF-CNN goes from ~560 ms (fp32, NCHW) to ~46 ms per 256² image.
The plain path stays available (``fast=False``) as the reference the fast path is tested against.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from priorstudio.core.denoisers.architectures import BiasFreeBatchNorm


@functools.cache
def cpu_has_fast_bf16() -> bool:
    """True when the CPU has native bf16 matrix units (AMX-bf16 or AVX-512-bf16)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def best_device() -> torch.device:
    """CUDA, then Apple's MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def fold_batchnorm(net: nn.Module) -> nn.Module:
    """Return an eval-mode copy of ``net`` with every Conv → BiasFreeBatchNorm pair merged.

    In eval mode the bias-free norm is a per-output-channel scale, so it folds exactly into the
    convolution's weights (no bias appears, so the folded network is still bias-free).
    """
    net = copy.deepcopy(net).eval()

    def fold_sequential(seq: nn.Sequential) -> nn.Sequential:
        out: list[nn.Module] = []
        for m in seq:
            if isinstance(m, BiasFreeBatchNorm) and out and isinstance(out[-1], nn.Conv2d):
                conv = out[-1]
                with torch.no_grad():
                    conv.weight.mul_(m.scale().view(-1, 1, 1, 1).to(conv.weight.dtype))
                continue
            out.append(m)
        return nn.Sequential(*out)

    def visit(module: nn.Module) -> None:
        for name, child in module.named_children():
            if isinstance(child, nn.Sequential):
                for sub in child:
                    visit(sub)
                setattr(module, name, fold_sequential(child))
            else:
                visit(child)

    visit(net)
    return net


@functools.cache
def fused_conv_relu_available(dtype: torch.dtype = torch.float32) -> bool:
    """True when oneDNN's convolution-with-ReLU primitive runs here in ``dtype`` and agrees with conv then ReLU.

    It is a private PyTorch operator (the one ``torch.compile`` lowers to on the CPU), so it is probed once
    per dtype rather than trusted: a build without it, one whose result differs, or a CPU whose oneDNN has
    no bf16 convolutions (AVX2 only: the bf16 call raises) keeps the two-step path.
    """
    try:
        op = torch.ops.mkldnn._convolution_pointwise
        gen = torch.Generator().manual_seed(0)
        x = torch.randn(1, 3, 9, 7, generator=gen).to(dtype)
        w = torch.randn(4, 3, 3, 3, generator=gen).to(dtype)
        tol = 1e-5 if dtype == torch.float32 else 5e-2
        with torch.autocast("cpu", enabled=False), torch.no_grad():  # the first caller may be inside either
            got = op(x, w, None, [1, 1], [1, 1], [1, 1], 1, "relu", [], "").float()
            want = F.relu(F.conv2d(x.float(), w.float(), padding=1))
            return bool(torch.allclose(got, want, atol=tol, rtol=tol))
    except (AttributeError, RuntimeError):
        return False


class ConvReLU(nn.Conv2d):
    """A bias-free convolution with its ReLU applied in the convolution's own output stage on the CPU.

    The activation tensor is written once instead of written, read and written again: separate ReLUs took
    about a tenth of the bundled UNet's time at 256². Outside inference mode, or off the CPU, it is exactly
    ``relu(conv(x))``; the weights (and their state-dict names) are the convolution's.
    """

    def __init__(self, conv: nn.Conv2d) -> None:
        super().__init__(
            conv.in_channels,
            conv.out_channels,
            conv.kernel_size,
            stride=conv.stride,
            padding=conv.padding,
            dilation=conv.dilation,
            groups=conv.groups,
            bias=False,
            padding_mode=conv.padding_mode,
            device="meta",  # its own weight is replaced at once: no storage, no draw from the global RNG
        )
        self.weight = conv.weight
        self._cast_weight: tuple[tuple[int, int], Tensor] | None = None

    def _weight_as(self, dtype: torch.dtype) -> Tensor:
        """The weight in ``dtype``, cast once and kept while the weight's storage and version stay the same
        (an in-place edit, ``load_state_dict`` or a new weight tensor makes a new copy)."""
        if dtype == self.weight.dtype:
            return self.weight
        key = (self.weight.data_ptr(), self.weight._version)
        if self._cast_weight is None or self._cast_weight[0] != key or self._cast_weight[1].dtype != dtype:
            w = self.weight.detach().to(dtype).contiguous(memory_format=torch.channels_last)
            self._cast_weight = (key, w)
        return self._cast_weight[1]

    def forward(self, x: Tensor) -> Tensor:
        # Only in inference mode (as ``Denoiser.denoise`` runs): there no reverse- or forward-mode derivative
        # can be asked for, which the primitive would silently drop (a JVP through it came out as the input's).
        bf16 = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        dtype = torch.bfloat16 if bf16 else x.dtype
        if not (torch.is_inference_mode_enabled() and x.device.type == "cpu" and fused_conv_relu_available(dtype)):
            return F.relu(super().forward(x))
        x = x.to(dtype)
        w = self._weight_as(x.dtype)
        return torch.ops.mkldnn._convolution_pointwise(
            x, w, None, list(self.padding), list(self.stride), list(self.dilation), self.groups, "relu", [], ""
        )


def fuse_conv_relu(net: nn.Module) -> nn.Module:
    """Replace every bias-free, zero-padded Conv2d → ReLU pair inside a Sequential by one :class:`ConvReLU`
    (in place); what the primitive cannot take is decided here, once, not at every call."""
    for module in net.modules():
        if not isinstance(module, nn.Sequential):
            continue
        for i in range(len(module) - 1):
            conv, act = module[i], module[i + 1]
            if type(conv) is not nn.Conv2d or not isinstance(act, nn.ReLU):
                continue
            if conv.bias is None and conv.padding_mode == "zeros" and not isinstance(conv.padding, str):
                module[i] = ConvReLU(conv)
                module[i + 1] = nn.Identity()
    return net


class Denoiser:
    """A ready-to-run blind denoiser: ``D(y)`` for a batch (B, C, H, W) of float images → x̂, float32.

    ``fast=True`` folds batch norm, fuses each ReLU into its convolution, uses channels_last and bf16
    autocast when the device supports it;
    ``fast=False`` runs the plain fp32 NCHW network. Always in inference mode: no gradients are kept.
    """

    def __init__(
        self,
        net: nn.Module,
        *,
        name: str = "denoiser",
        fast: bool = True,
        device: torch.device | str | None = None,
        bf16: bool | None = None,
        info: dict[str, Any] | None = None,
    ) -> None:
        self.name = name
        self.info = dict(info or {})
        self.channels = int(getattr(net, "channels", 1))
        self.device = torch.device(device) if device is not None else best_device()
        self.fast = fast
        net = fuse_conv_relu(fold_batchnorm(net)) if fast else copy.deepcopy(net).eval()
        net = net.to(self.device)
        for p in net.parameters():
            p.requires_grad_(False)
        if bf16 is None:
            bf16 = fast and (self.device.type == "cuda" or (self.device.type == "cpu" and cpu_has_fast_bf16()))
        self.bf16 = bool(bf16)
        if fast and self.device.type != "mps":
            net = net.to(memory_format=torch.channels_last)
        self.net = net

    @property
    def description(self) -> str:
        path = "fast bf16" if self.bf16 else ("fast fp32" if self.fast else "plain fp32")
        return f"{self.name} ({path}, {self.device.type})"

    def __call__(self, y: Tensor) -> Tensor:
        return self.denoise(y)

    def denoise(self, y: Tensor) -> Tensor:
        """Denoise a batch (B, C, H, W) or one image (C, H, W); returns float32 on y's device."""
        if y.dim() == 3:
            return self.denoise(y.unsqueeze(0)).squeeze(0)
        if y.dim() != 4 or y.shape[1] != self.channels:
            raise ValueError(
                f"{self.name} expects {self.channels}-channel images (B, {self.channels}, H, W), "
                f"got shape {tuple(y.shape)}"
            )
        src_device = y.device
        x = y.to(self.device, torch.float32)
        if self.fast and self.device.type != "mps":
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            if self.bf16:
                with torch.autocast(self.device.type, dtype=torch.bfloat16):
                    out = self.net(x)
            else:
                out = self.net(x)
        return out.float().contiguous().to(src_device)

    def differentiable(self) -> nn.Module:
        """A copy of the fp32 network (folded), for autograd: Jacobian rows and products in the inspector.

        A copy, so nothing done to it (weights edited through ``.data``, a change of dtype) reaches the
        denoiser, whose fast path keeps cast weights.
        """
        return copy.deepcopy(self.net).float()
