"""Element-wise activation functions of the transformer's MLP, by name (ModelConfig.activation).

"gelu" is the tanh approximation (GPT-2's "gelu_new"; the name predates the others and enters stored run hashes);
"gelu_erf" is the exact GELU (Hendrycks & Gimpel 2016). The rest follow the Hugging Face names they are
imported from (HF_ACTIVATIONS maps a transformers `activation_function` onto ours). Every one is element-wise, so
permuting hidden units commutes with it.
"""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": F.relu,
    "gelu": lambda z: F.gelu(z, approximate="tanh"),
    "gelu_erf": F.gelu,
    "gelu_clip10": lambda z: torch.clip(F.gelu(z), -10.0, 10.0),
    "quick_gelu": lambda z: z * torch.sigmoid(1.702 * z),
    "silu": F.silu,
    "mish": F.mish,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "identity": lambda z: z,
    "relu6": F.relu6,
    "relu2": lambda z: torch.square(F.relu(z)),
    "leaky_relu": F.leaky_relu,  # negative slope 0.01, nn.LeakyReLU's default
    "hardswish": F.hardswish,
    "laplace": lambda z: 0.5 * (1.0 + torch.erf((z - 0.707107) / (0.282095 * math.sqrt(2.0)))),
    "sqrtsoftplus": lambda z: F.softplus(z).sqrt(),
}

# transformers' activation_function (ACT2FN) -> ours; names missing here (prelu, xielu: learned parameters) are
# refused by the importers
HF_ACTIVATIONS = {
    "gelu_new": "gelu", "gelu_pytorch_tanh": "gelu", "gelu_python_tanh": "gelu", "gelu_fast": "gelu",
    "gelu_accurate": "gelu", "gelu": "gelu_erf", "gelu_python": "gelu_erf", "gelu_10": "gelu_clip10",
    "quick_gelu": "quick_gelu", "relu": "relu", "silu": "silu", "swish": "silu", "mish": "mish", "tanh": "tanh",
    "sigmoid": "sigmoid", "linear": "identity", "relu6": "relu6", "relu2": "relu2", "leaky_relu": "leaky_relu",
    "hardswish": "hardswish", "laplace": "laplace", "sqrtsoftplus": "sqrtsoftplus",
}


def activation(name: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """The activation function called `name` (KeyError listing the choices otherwise)."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise KeyError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}") from None
