"""lmc_core: linear mode connectivity of transformers, reproducible and fast."""
__version__ = "0.1.0"
