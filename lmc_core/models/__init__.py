"""Models: the K-copy causal transformer LM."""
from .transformer import DropoutSource, StackedLayerNorm, StackedLinear, TransformerLM, sinusoidal

__all__ = ["DropoutSource", "StackedLayerNorm", "StackedLinear", "TransformerLM", "sinusoidal"]
