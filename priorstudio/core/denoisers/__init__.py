"""Blind, bias-free denoisers: architectures, the fast inference path, the weights registry, training.

Convention (stated once, here): every network's ``forward`` returns the *denoised image* x̂ = D(y).
Internally the networks predict the noise and subtract it (residual learning), but no caller sees that.
"""

from priorstudio.core.denoisers.architectures import BFCNN, BiasFreeBatchNorm, BiasFreeUNet, build_network
from priorstudio.core.denoisers.inference import Denoiser
from priorstudio.core.denoisers.registry import available_models, load_denoiser, load_weights_file

__all__ = [
    "BFCNN",
    "BiasFreeBatchNorm",
    "BiasFreeUNet",
    "Denoiser",
    "available_models",
    "build_network",
    "load_denoiser",
    "load_weights_file",
]
