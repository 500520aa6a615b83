"""The TFLite backend: which runtime is installed, loaded models, one interpreter per worker."""

from edged.runtime.backend import Backend, select_backend
from edged.runtime.model import LoadedModel, TensorSpec, load_model
from edged.runtime.session import Session

__all__ = ["Backend", "LoadedModel", "Session", "TensorSpec", "load_model", "select_backend"]
