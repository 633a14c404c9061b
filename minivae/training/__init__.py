"""Training and data, one module per job.

- ``config.py``      the settings of a run (TrainConfig) and what may change on resume
- ``runfolder.py``   atomic writes, the run-folder lock, the overwrite and resume rules
- ``checkpoint.py``  saving and reading ``checkpoint.npz`` (never with pickle)
- ``step.py``        one training step (loss, check, backward, update), shared with the labs
- ``memory.py``      memory estimates that refuse impossible settings up front
- ``trainer.py``     the Trainer: epochs, metrics, diagnostics at the end; ``load_run``
- ``data.py``, ``diagnostics.py``, ``figures.py``  data sets, latent diagnostics, PNG figures
"""
