"""Models with a leading copy axis K: the causal transformer LM, the MLP, the BERT-family encoder classifier."""
from .encoder import EncoderClassifier, EncoderConfig
from .mlp import MLPConfig, StackedMLP
from .transformer import TransformerLM

__all__ = ["EncoderClassifier", "EncoderConfig", "MLPConfig", "StackedMLP", "TransformerLM"]
