"""transferlab: transfer learning for small labelled image folders.

Public API: ``train``, ``evaluate_run``, ``Predictor``, ``split_folder``, ``create_model``,
``load_index``, ``TrainConfig``.
"""
__version__ = "0.1.0"

from .backbones import create_model, names as backbone_names  # noqa: E402
from .config import TrainConfig, load_config  # noqa: E402
from .data import load_index  # noqa: E402
from .evaluation import evaluate_run  # noqa: E402
from .inference import Predictor  # noqa: E402
from .split import SplitSpec, split_folder  # noqa: E402
from .training import train  # noqa: E402

__all__ = ["__version__", "train", "evaluate_run", "Predictor", "split_folder", "SplitSpec",
           "create_model", "backbone_names", "load_index", "TrainConfig", "load_config"]
