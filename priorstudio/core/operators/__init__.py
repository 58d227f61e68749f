"""Linear measurement operators: what the camera, the mask or the degradation lets us see of an image.

Every operator measures batches (B, C, H, W) of gray or color images of any size. All are orthonormal
(MᵀM = I) except ``Blur``, whose data step goes through a Tikhonov pseudo-inverse (see ``blur``).
"""

from priorstudio.core.operators.base import Operator
from priorstudio.core.operators.blur import DEFAULT_EPS, Blur
from priorstudio.core.operators.compressive import CompressiveSensing
from priorstudio.core.operators.factory import TASKS, TaskInfo, TaskParam, make_operator
from priorstudio.core.operators.identity import Identity
from priorstudio.core.operators.kernels import box_kernel, check_kernel, gaussian_kernel, motion_kernel
from priorstudio.core.operators.pixels import Inpaint, PixelSubset, RandomPixels
from priorstudio.core.operators.spectral import SpectralLowPass
from priorstudio.core.operators.superres import SuperResolution
from priorstudio.core.operators.transforms import dct, idct

__all__ = [
    "DEFAULT_EPS",
    "TASKS",
    "Blur",
    "CompressiveSensing",
    "Identity",
    "Inpaint",
    "Operator",
    "PixelSubset",
    "RandomPixels",
    "SpectralLowPass",
    "SuperResolution",
    "TaskInfo",
    "TaskParam",
    "box_kernel",
    "check_kernel",
    "dct",
    "gaussian_kernel",
    "idct",
    "make_operator",
    "motion_kernel",
]
