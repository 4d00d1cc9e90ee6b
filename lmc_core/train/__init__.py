"""Training K copies in lockstep: the loop, its callbacks and the stacked optimizers."""
