"""Performance models with one contract (:class:`PerfModel`); ``MODELS`` is the registry."""

from .base import PerfModel
from .learned import LearnedModel
from .roofline import RooflineModel

#: name → model class (``perfmodel evaluate --model NAME``)
MODELS: dict[str, type[PerfModel]] = {"roofline": RooflineModel, "learned": LearnedModel}

__all__ = ["MODELS", "LearnedModel", "PerfModel", "RooflineModel"]
