import pytest
import torch

from lmc_core.config import ModelConfig, RunSpec, Seeds, TrainConfig, model_preset


@pytest.fixture(scope="session")
def stream() -> torch.Tensor:
    """A synthetic token stream with some structure (so training lowers the loss)."""
    g = torch.Generator().manual_seed(0)
    base = torch.randint(0, 60, (4000,), generator=g)
    return torch.cat([base, (base * 7 + 3) % 60]).repeat(2)


def tiny_model(**kw) -> ModelConfig:
    return model_preset("ptb-transformer", vocab_size=60, d_model=16, d_ff=24, context=12, **kw)


def tiny_spec(seeds=(Seeds(0, 1, 2),), steps=12, model=None, **train) -> RunSpec:
    train.setdefault("batch_size", 4)
    return RunSpec(model=model or tiny_model(), train=TrainConfig(steps=steps, **train), seeds=tuple(seeds))
