"""Training and data: the trainer, run folders and checkpoints, data sets, diagnostics, figures."""
