"""``minivae explore RUN_DIR``: a local web page over a trained run's latent space.

:mod:`session` computes (the model behind a lock), :mod:`server` serves the page in
``static/`` and the JSON/PNG API; the command itself is in :mod:`minivae.cli.explore`.
"""

from minivae.explore.server import make_server
from minivae.explore.session import Explorer, ExploreError, png_bytes, run_metrics

__all__ = ["Explorer", "ExploreError", "make_server", "png_bytes", "run_metrics"]
