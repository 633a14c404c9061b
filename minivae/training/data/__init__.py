"""Data sets for the lessons: small images, MNIST-style files and toy 2-D clouds.

Everything here returns plain NumPy arrays wrapped in a :class:`Dataset`; moving
a batch to the GPU is the engine's job, not the loader's. The package depends on
NumPy, scikit-learn (for its bundled digits) and :mod:`minivae.random` only.

One module per job, each re-exported here (``from minivae.training.data import load_digits``):

=================  ===============================================================
module             holds
=================  ===============================================================
``dataset``        :class:`Dataset` (float32 ``x`` of shape (n, d), optional integer
                   labels ``y``, what it takes to draw rows as images), ``DataError``,
                   the seeded stratified :func:`split_indices`
``digits``         :func:`load_digits`: scikit-learn's 1797 handwritten 8x8 digits
``idx``            :func:`read_idx` / :func:`write_idx`: the IDX format of MNIST
``mnist``          :func:`load_mnist`: MNIST / Fashion-MNIST from a folder, optionally
                   downloaded into a cache and verified by SHA-256
``toy2d``          :func:`ring`, :func:`two_moons`, :func:`gaussian_mixture`
``catalog``        :func:`load_dataset`: one name-based entry point for the command line
``batching``       :func:`batches`: what a training loop needs
``binarize``       0/1 pixels for a Bernoulli likelihood, dynamic or static
=================  ===============================================================

One-hot labels are the engine's ``mv.one_hot``. Randomness is always explicit:
functions that shuffle or sample take a :class:`minivae.random.Generator` (or a
``seed`` where one fixed split is meant), so the same seed gives the same numbers.
"""

from minivae.training.data.batching import batches
from minivae.training.data.binarize import (
    BINARIZE_MODES,
    binarize,
    binarize_dataset,
    check_binarize_mode,
    is_binary,
    load_binarized,
    log_likelihood_refusal,
    save_binarized,
)
from minivae.training.data.catalog import DATASET_NAMES, load_dataset
from minivae.training.data.dataset import SPLITS, DataError, Dataset, split_indices
from minivae.training.data.digits import load_digits
from minivae.training.data.idx import read_idx, write_idx
from minivae.training.data.mnist import default_cache_dir, load_mnist
from minivae.training.data.toy2d import gaussian_mixture, ring, two_moons

__all__ = [
    "DataError",
    "Dataset",
    "SPLITS",
    "DATASET_NAMES",
    "split_indices",
    "load_digits",
    "read_idx",
    "write_idx",
    "load_mnist",
    "default_cache_dir",
    "ring",
    "two_moons",
    "gaussian_mixture",
    "load_dataset",
    "batches",
    "BINARIZE_MODES",
    "check_binarize_mode",
    "binarize",
    "binarize_dataset",
    "is_binary",
    "save_binarized",
    "load_binarized",
    "log_likelihood_refusal",
]
