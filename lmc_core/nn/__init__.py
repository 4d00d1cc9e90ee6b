"""Building blocks shared by every model family: layers with a leading copy axis and seeded dropout."""
from .dropout import DropoutSource, ReplayedDropout, TrimmedDropout, dropout
from .layers import StackedLayerNorm, StackedLinear, StackedRMSNorm, sinusoidal

__all__ = ["DropoutSource", "ReplayedDropout", "TrimmedDropout", "StackedLayerNorm", "StackedLinear", "StackedRMSNorm",
           "dropout", "sinusoidal"]
