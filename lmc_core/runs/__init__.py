"""Trained runs on disk: the run store, its file layout and formats, locks, spawning at step k and grids of
runs dispatched through submitit."""
