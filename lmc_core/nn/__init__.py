"""Building blocks shared by every model family: layers with a leading copy axis and seeded dropout."""
from .dropout import DropoutSource, dropout
from .layers import StackedLayerNorm, StackedLinear, StackedRMSNorm, sinusoidal

__all__ = ["DropoutSource", "StackedLayerNorm", "StackedLinear", "StackedRMSNorm", "dropout", "sinusoidal"]
