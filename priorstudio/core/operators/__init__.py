"""Linear measurement operators: what the camera, the mask or the degradation lets us see of an image."""

from priorstudio.core.operators.base import Operator
from priorstudio.core.operators.factory import TASKS, TaskInfo, TaskParam, make_operator
from priorstudio.core.operators.identity import Identity
from priorstudio.core.operators.pixels import Inpaint, PixelSubset, RandomPixels

__all__ = [
    "TASKS",
    "Identity",
    "Inpaint",
    "Operator",
    "PixelSubset",
    "RandomPixels",
    "TaskInfo",
    "TaskParam",
    "make_operator",
]
