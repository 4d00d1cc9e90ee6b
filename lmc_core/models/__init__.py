"""Models with a leading copy axis K: the causal transformer LM, the MLP, the BERT-family encoder classifier."""
from .encoder import EncoderClassifier, EncoderConfig
from .mlp import MLPConfig, StackedMLP
from .transformer import DropoutSource, StackedLayerNorm, StackedLinear, TransformerLM, sinusoidal

__all__ = ["DropoutSource", "EncoderClassifier", "EncoderConfig", "MLPConfig", "StackedLayerNorm", "StackedLinear",
           "StackedMLP", "TransformerLM", "sinusoidal"]
