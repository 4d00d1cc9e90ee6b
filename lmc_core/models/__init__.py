"""Models with a leading copy axis K: the causal transformer LM, the MLP, the BERT-family encoder classifier and
its masked-LM pretraining form."""
from .encoder import EncoderClassifier, EncoderConfig
from .mlm import MaskedLM, MaskedLMConfig
from .mlp import MLPConfig, StackedMLP
from .transformer import TransformerLM

__all__ = ["EncoderClassifier", "EncoderConfig", "MaskedLM", "MaskedLMConfig", "MLPConfig", "StackedMLP", "TransformerLM"]
