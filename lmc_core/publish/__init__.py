"""Notebook and report plumbing: figure sets, HTML reports and their index, the README's results, explorer
widgets, progress bars, TensorBoard logs, Colab setup and the project's folders."""
