"""Training K copies in lockstep: the loop (loop.py), one update of all copies (trainer.py), what happens
around the updates (callbacks.py), the stacked optimizers (optim.py) and the Fisher penalty (fisher.py)."""
from .callbacks import Callback, Divergence, Monitor, ProgressBar, StopAfter, TensorBoard
from .loop import train_copies
from .trainer import TrainingDiverged, TrainResult, TrainState, resolve_device

__all__ = ["Callback", "Divergence", "Monitor", "ProgressBar", "StopAfter", "TensorBoard", "TrainResult",
           "TrainState", "TrainingDiverged", "resolve_device", "train_copies"]
