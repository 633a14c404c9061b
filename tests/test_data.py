"""Tests for minivae.training.data: loaders, the IDX format, downloads, toy data, batching.

No test touches the network: downloads are exercised with file:// URLs that
point into a temporary folder the test fills with small fake MNIST files.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minivae.training import data as D
from minivae.training.data import digits as digits_module, mnist as mnist_module
from minivae.random import Generator

# -----------------------------------------------------------------------------
# helpers
# -----------------------------------------------------------------------------

TRAIN_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte")
TEST_FILES = ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def fake_mnist(folder: Path, n_train: int = 7, n_test: int = 3, gz: bool = True, seed: int = 0) -> dict:
    """Write tiny MNIST-shaped IDX files into ``folder``; return the arrays written."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    suffix = ".gz" if gz else ""
    arrays = {}
    for (images_name, labels_name), n in ((TRAIN_FILES, n_train), (TEST_FILES, n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        D.write_idx(folder / (images_name + suffix), images)
        D.write_idx(folder / (labels_name + suffix), labels)
        arrays[images_name], arrays[labels_name] = images, labels
    return arrays


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# -----------------------------------------------------------------------------
# Dataset
# -----------------------------------------------------------------------------


def test_dataset_rejects_wrong_types_and_shapes():
    with pytest.raises(ValueError, match="float32"):
        D.Dataset(np.zeros((3, 2)), None, None, None, "bad")  # float64
    with pytest.raises(ValueError, match="int64"):
        D.Dataset(np.zeros((3, 2), np.float32), np.zeros(4, np.int64), None, 2, "bad")
    with pytest.raises(ValueError, match="image_shape"):
        D.Dataset(np.zeros((3, 6), np.float32), None, (2, 2), None, "bad")


def test_subset_picks_rows_and_does_not_alias():
    full = D.Dataset(np.arange(12, dtype=np.float32).reshape(6, 2), np.arange(6, dtype=np.int64), None, 6, "toy")
    part = full.subset(np.array([4, 1]))
    np.testing.assert_array_equal(part.y, [4, 1])
    np.testing.assert_array_equal(part.x, [[8, 9], [2, 3]])
    sliced = full.subset(slice(0, 2))
    sliced.x[0, 0] = 100.0
    assert full.x[0, 0] == 0.0
    assert len(part) == 2 and part.num_classes == 6


# -----------------------------------------------------------------------------
# digits
# -----------------------------------------------------------------------------


def test_digits_shapes_range_and_split_sizes():
    train, test, everything = (D.load_digits(s) for s in ("train", "test", "all"))
    assert len(everything) == 1797
    assert len(train) + len(test) == 1797
    assert abs(len(test) - 0.2 * 1797) <= 10  # one rounding per class at most
    for ds in (train, test, everything):
        assert ds.x.dtype == np.float32 and ds.x.shape[1] == 64
        assert ds.y.dtype == np.int64
        assert ds.x.min() >= 0.0 and ds.x.max() <= 1.0
        assert ds.image_shape == (8, 8) and ds.num_classes == 10
        assert ds.images().shape == (len(ds), 8, 8)
    assert everything.x.max() == 1.0  # 16/16: the scaling reaches the top


def test_digits_values_match_sklearn_scaled():
    from sklearn.datasets import load_digits as sk

    bunch = sk()
    everything = D.load_digits("all")
    np.testing.assert_allclose(everything.x, bunch.data / 16.0, rtol=0, atol=1e-7)
    np.testing.assert_array_equal(everything.y, bunch.target)


def test_digits_file_read_directly_equals_sklearn_loader(monkeypatch):
    """The digits file is read without importing sklearn.datasets; the fallback through
    scikit-learn's loader (file not found) gives the same table."""
    direct = digits_module._digits_table()
    monkeypatch.setattr(digits_module.importlib.util, "find_spec", lambda name: None)
    np.testing.assert_array_equal(digits_module._digits_table(), direct)


def test_digits_split_is_deterministic_disjoint_and_stratified():
    a, b = D.load_digits("train", seed=3), D.load_digits("train", seed=3)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    other = D.load_digits("train", seed=4)
    assert not np.array_equal(a.x, other.x)

    labels = D.load_digits("all").y
    train, test = D.split_indices(labels, len(labels), 0.2, seed=3)
    assert np.intersect1d(train, test).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([train, test])), np.arange(len(labels)))
    np.testing.assert_array_equal(labels[train], a.y)
    for c in range(10):
        assert (labels[test] == c).sum() == round((labels == c).sum() * 0.2)


def test_split_arguments_are_checked():
    with pytest.raises(ValueError, match="split"):
        D.load_digits("validation")
    with pytest.raises(ValueError, match="test_fraction"):
        D.load_digits("train", test_fraction=1.0)


# -----------------------------------------------------------------------------
# IDX format
# -----------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "int32", "float32", "float64"])
def test_idx_round_trip(tmp_path, suffix, dtype):
    array = (np.arange(2 * 3 * 5) - 7).reshape(2, 3, 5).astype(dtype)
    path = tmp_path / ("a.idx" + suffix)
    D.write_idx(path, array)
    if suffix == ".gz":
        assert path.read_bytes()[:2] == b"\x1f\x8b"
    back = D.read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.shape == array.shape
    np.testing.assert_array_equal(back, array)
    back[0, 0, 0] = 1  # must be a writable private copy


def test_idx_header_is_big_endian_mnist_layout(tmp_path):
    path = tmp_path / "labels"
    D.write_idx(path, np.array([3, 1, 4], dtype=np.uint8))
    assert path.read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 3, 3, 1, 4])


@settings(max_examples=25, deadline=None)
@given(shape=st.lists(st.integers(0, 4), min_size=1, max_size=4), seed=st.integers(0, 2**32 - 1))
def test_idx_round_trip_any_shape(tmp_path_factory, shape, seed):
    array = np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8)
    path = tmp_path_factory.mktemp("idx") / "x.gz"
    D.write_idx(path, array)
    np.testing.assert_array_equal(D.read_idx(path), array)


def test_idx_bad_magic(tmp_path):
    path = tmp_path / "bad-magic"
    path.write_bytes(bytes([1, 0, 8, 1, 0, 0, 0, 1, 5]))
    with pytest.raises(D.DataError, match="magic") as info:
        D.read_idx(path)
    assert str(path) in str(info.value)


def test_idx_unknown_type_code(tmp_path):
    path = tmp_path / "bad-type"
    path.write_bytes(bytes([0, 0, 7, 1, 0, 0, 0, 1, 5]))
    with pytest.raises(D.DataError, match="0x07") as info:
        D.read_idx(path)
    assert str(path) in str(info.value)


def test_idx_truncated_and_overlong(tmp_path):
    good = tmp_path / "good"
    D.write_idx(good, np.zeros((4, 3, 3), dtype=np.uint8))
    whole = good.read_bytes()

    truncated = tmp_path / "truncated"
    truncated.write_bytes(whole[:-5])
    with pytest.raises(D.DataError, match="truncated") as info:
        D.read_idx(truncated)
    assert str(truncated) in str(info.value) and "36" in str(info.value)

    overlong = tmp_path / "overlong"
    overlong.write_bytes(whole + b"\x00")
    with pytest.raises(D.DataError, match="too long") as info:
        D.read_idx(overlong)
    assert str(overlong) in str(info.value)

    header_cut = tmp_path / "header-cut"
    header_cut.write_bytes(whole[:9])  # 3 dims need 16 header bytes
    with pytest.raises(D.DataError, match="header"):
        D.read_idx(header_cut)


def test_idx_truncated_gzip(tmp_path):
    path = tmp_path / "cut.gz"
    D.write_idx(path, np.arange(200, dtype=np.uint8))
    path.write_bytes(path.read_bytes()[:-12])
    with pytest.raises(D.DataError, match="gzip") as info:
        D.read_idx(path)
    assert str(path) in str(info.value)


def test_idx_missing_file(tmp_path):
    with pytest.raises(D.DataError, match="not found"):
        D.read_idx(tmp_path / "nope")


def test_write_idx_rejects_unsupported_dtype(tmp_path):
    with pytest.raises(ValueError, match="int64"):
        D.write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))


# -----------------------------------------------------------------------------
# MNIST loader (local files)
# -----------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_load_mnist_from_folder(tmp_path, gz):
    arrays = fake_mnist(tmp_path / "root", gz=gz)
    cache = tmp_path / "cache"
    train = D.load_mnist(tmp_path / "root", "train", cache_dir=cache)
    test = D.load_mnist(tmp_path / "root", "test", cache_dir=cache)
    assert train.x.shape == (7, 784) and test.x.shape == (3, 784)
    assert train.x.dtype == np.float32 and train.image_shape == (28, 28) and train.num_classes == 10
    np.testing.assert_allclose(train.images(), arrays[TRAIN_FILES[0]] / 255.0, atol=1e-7)
    np.testing.assert_array_equal(test.y, arrays[TEST_FILES[1]])
    assert train.name == "mnist-train"
    both = D.load_mnist(tmp_path / "root", "all", cache_dir=cache)
    assert len(both) == 10
    np.testing.assert_array_equal(both.y, np.concatenate([train.y, test.y]))
    assert not cache.exists()  # nothing is downloaded or created without download=True


def test_load_mnist_count_mismatch(tmp_path):
    fake_mnist(tmp_path)
    D.write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.zeros(6, dtype=np.uint8))  # 7 images
    with pytest.raises(D.DataError, match="7 images") as info:
        D.load_mnist(tmp_path, "train", cache_dir=tmp_path / "cache")
    assert "train-labels-idx1-ubyte.gz" in str(info.value)


def test_load_mnist_rejects_labels_out_of_range(tmp_path):
    fake_mnist(tmp_path)
    D.write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", np.array([1, 2, 10], dtype=np.uint8))
    with pytest.raises(D.DataError, match="0..9"):
        D.load_mnist(tmp_path, "test", cache_dir=tmp_path / "cache")


def test_load_mnist_missing_files_lists_paths_tried(tmp_path):
    root, cache = tmp_path / "root", tmp_path / "cache"
    root.mkdir()
    with pytest.raises(D.DataError) as info:
        D.load_mnist(root, "test", cache_dir=cache)
    message = str(info.value)
    for folder in (root, cache):
        for name in ("t10k-images-idx3-ubyte", "t10k-images-idx3-ubyte.gz"):
            assert str(folder / name) in message
    assert "download=True" in message


def test_load_mnist_finds_files_in_cache_dir(tmp_path):
    fake_mnist(tmp_path / "cache", gz=False)
    ds = D.load_mnist(None, "test", kind="fashion-mnist", cache_dir=tmp_path / "cache")
    assert len(ds) == 3 and ds.name == "fashion-mnist-test"


def test_load_mnist_unknown_kind(tmp_path):
    with pytest.raises(ValueError, match="fashion-mnist"):
        D.load_mnist(tmp_path, kind="kmnist")


# -----------------------------------------------------------------------------
# MNIST download, over file:// only
# -----------------------------------------------------------------------------


def test_download_with_correct_checksums(tmp_path):
    source = tmp_path / "mirror"
    arrays = fake_mnist(source)
    digests = {p.name: sha256_of(p) for p in source.iterdir()}
    cache = tmp_path / "cache"
    ds = D.load_mnist(None, "train", download=True, url=source.as_uri(), cache_dir=cache, sha256=digests)
    np.testing.assert_array_equal(ds.y, arrays[TRAIN_FILES[1]])
    assert sorted(p.name for p in cache.iterdir()) == sorted(name + ".gz" for name in TRAIN_FILES)
    for name in TRAIN_FILES:
        assert (cache / (name + ".gz")).read_bytes() == (source / (name + ".gz")).read_bytes()
    # A second call finds the cached files: it works even with the mirror gone.
    for p in source.iterdir():
        p.unlink()
    again = D.load_mnist(None, "train", download=True, url=source.as_uri(), cache_dir=cache, sha256=digests)
    np.testing.assert_array_equal(again.x, ds.x)


def test_download_wrong_checksum_leaves_no_file(tmp_path):
    source = tmp_path / "mirror"
    fake_mnist(source)
    cache = tmp_path / "cache"
    # The fake files cannot match the built-in digests of the real MNIST files.
    with pytest.raises(D.DataError, match="SHA-256 mismatch") as info:
        D.load_mnist(None, "test", download=True, url=source.as_uri(), cache_dir=cache)
    assert "t10k-images-idx3-ubyte.gz" in str(info.value)
    assert list(cache.iterdir()) == []  # no partial or temporary file left behind

    # A wrong user-supplied digest is refused the same way.
    wrong = {"t10k-images-idx3-ubyte.gz": "0" * 64}
    with pytest.raises(D.DataError, match="SHA-256 mismatch"):
        D.load_mnist(None, "test", download=True, url=source.as_uri() + "/", cache_dir=cache, sha256=wrong)
    assert list(cache.iterdir()) == []


def test_download_from_missing_url_leaves_no_file(tmp_path):
    cache = tmp_path / "cache"
    missing = (tmp_path / "no-such-mirror").as_uri()
    with pytest.raises(D.DataError, match="no-such-mirror"):
        D.load_mnist(None, "train", download=True, url=missing, cache_dir=cache)
    assert list(cache.iterdir()) == []


def test_download_rejects_unknown_sha256_names(tmp_path):
    with pytest.raises(ValueError, match="unknown file names"):
        D.load_mnist(tmp_path, download=True, cache_dir=tmp_path, sha256={"train-images.gz": "0" * 64})


def test_builtin_digests_are_well_formed():
    # Guards against a typo in the table: 64 lowercase hex digits, all distinct.
    digests = [d for table in mnist_module._KNOWN_SHA256.values() for d in table.values()]
    assert len(digests) == 8 and len(set(digests)) == 8
    assert all(len(d) == 64 and set(d) <= set("0123456789abcdef") for d in digests)


# -----------------------------------------------------------------------------
# synthetic 2-D data
# -----------------------------------------------------------------------------


def test_ring_follows_the_formula_and_radius_statistics():
    n = 20000
    ds = D.ring(n, Generator(5))
    assert ds.x.shape == (n, 2) and ds.x.dtype == np.float32 and ds.y is None and ds.image_shape is None
    z = Generator(5).numpy.standard_normal((n, 2))  # the same draws
    norm = np.linalg.norm(z, axis=1, keepdims=True)
    np.testing.assert_allclose(ds.x, z / 10 + z / norm, rtol=1e-6, atol=1e-6)

    radius = np.linalg.norm(ds.x.astype(np.float64), axis=1)
    assert radius.min() > 1.0  # radius = ||z||/10 + 1
    # E||z|| = sqrt(pi/2) for a 2-D standard normal; std of the mean radius is ~0.0005.
    assert abs(radius.mean() - (1 + np.sqrt(np.pi / 2) / 10)) < 0.005
    # Angles are uniform: the mean direction is near the origin.
    assert np.linalg.norm((ds.x / radius[:, None]).mean(axis=0)) < 0.03


def test_two_moons_lie_on_their_half_circles_without_noise():
    ds = D.two_moons(500, Generator(1), noise=0.0)
    assert set(np.unique(ds.y)) == {0, 1} and ds.num_classes == 2
    upper, lower = ds.x[ds.y == 0], ds.x[ds.y == 1]
    np.testing.assert_allclose(np.linalg.norm(upper, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(lower - [1.0, 0.5], axis=1), 1.0, atol=1e-5)
    assert upper[:, 1].min() >= -1e-6 and lower[:, 1].max() <= 0.5 + 1e-6
    noisy = D.two_moons(500, Generator(1), noise=0.1)
    assert np.abs(noisy.x - ds.x).max() > 0.1


def test_gaussian_mixture_points_sit_near_their_centres():
    ds = D.gaussian_mixture(4000, Generator(2), k=6, radius=3.0, std=0.05)
    assert ds.num_classes == 6 and set(np.unique(ds.y)) == set(range(6))
    angles = 2 * np.pi * ds.y / 6
    centres = 3.0 * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    assert np.linalg.norm(ds.x - centres, axis=1).max() < 0.05 * 6


@pytest.mark.parametrize("make", [D.ring, D.two_moons, D.gaussian_mixture])
def test_synthetic_data_is_reproducible(make):
    a, b, c = make(300, Generator(9)), make(300, Generator(9)), make(300, Generator(10))
    np.testing.assert_array_equal(a.x, b.x)
    assert not np.array_equal(a.x, c.x)
    with pytest.raises(ValueError, match="positive integer"):
        make(0, Generator(0))


# -----------------------------------------------------------------------------
# load_dataset
# -----------------------------------------------------------------------------


def test_load_dataset_dispatch(tmp_path):
    assert len(D.load_dataset("digits", "test")) == len(D.load_digits("test"))
    fake_mnist(tmp_path)
    assert len(D.load_dataset("fashion-mnist", "train", root=tmp_path, cache_dir=tmp_path)) == 7
    for name in ("ring", "moons", "mixture"):
        train = D.load_dataset(name, "train", n=500, seed=1)
        test = D.load_dataset(name, "test", n=500, seed=1)
        assert len(train) + len(test) == 500 and train.image_shape is None
        # train and test are disjoint parts of one pool
        pooled = {tuple(row) for row in train.x} & {tuple(row) for row in test.x}
        assert not pooled
    k4 = D.load_dataset("mixture", "all", n=200, k=4)
    assert k4.num_classes == 4 and len(k4) == 200


def test_load_dataset_unknown_name_lists_valid_ones():
    with pytest.raises(ValueError) as info:
        D.load_dataset("cifar10")
    for name in D.DATASET_NAMES:
        assert name in str(info.value)


# -----------------------------------------------------------------------------
# batches (one-hot labels: the engine's mv.one_hot, tests/test_ops.py)
# -----------------------------------------------------------------------------


@pytest.mark.parametrize("n,batch_size", [(10, 3), (12, 4), (5, 8), (1, 1)])
def test_batches_cover_every_index_once(n, batch_size):
    x = np.arange(n, dtype=np.float32)[:, None]
    y = np.arange(n, dtype=np.int64) * 10
    seen = []
    sizes = []
    for xb, yb in D.batches((x, y), batch_size, rng=Generator(0)):
        np.testing.assert_array_equal(yb, xb[:, 0] * 10)  # rows stay paired
        seen.extend(xb[:, 0].astype(int))
        sizes.append(len(xb))
    assert sorted(seen) == list(range(n))
    assert all(s == batch_size for s in sizes[:-1]) and 0 < sizes[-1] <= batch_size


def test_batches_are_reproducible_and_shuffled():
    x = np.arange(100, dtype=np.float32)[:, None]

    def order(seed):
        return np.concatenate([xb[:, 0] for xb, _ in D.batches(x, 7, rng=Generator(seed))])

    np.testing.assert_array_equal(order(1), order(1))
    assert not np.array_equal(order(1), order(2))
    assert not np.array_equal(order(1), x[:, 0])
    # Two epochs from one generator differ, but the pair of epochs is reproducible.
    rng_a, rng_b = Generator(3), Generator(3)
    epochs_a = [np.concatenate([b[0][:, 0] for b in D.batches(x, 10, rng=rng_a)]) for _ in range(2)]
    epochs_b = [np.concatenate([b[0][:, 0] for b in D.batches(x, 10, rng=rng_b)]) for _ in range(2)]
    assert not np.array_equal(epochs_a[0], epochs_a[1])
    np.testing.assert_array_equal(epochs_a[1], epochs_b[1])


def test_batches_unshuffled_drop_last_and_dataset_input():
    ds = D.load_dataset("moons", "all", n=10)
    got = list(D.batches(ds, 4, shuffle=False, drop_last=True))
    assert len(got) == 2
    np.testing.assert_array_equal(np.concatenate([xb for xb, _ in got]), ds.x[:8])
    np.testing.assert_array_equal(got[1][1], ds.y[4:8])
    unlabeled = list(D.batches(ds.x, 4, shuffle=False))
    assert [len(xb) for xb, _ in unlabeled] == [4, 4, 2] and all(yb is None for _, yb in unlabeled)


def test_batches_validate_arguments_immediately():
    x = np.zeros((5, 2), np.float32)
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="batch_size"):
            D.batches(x, bad, rng=Generator(0))  # raised at the call, before iterating
    with pytest.raises(ValueError, match="rng"):
        D.batches(x, 2)
    with pytest.raises(ValueError, match="rows"):
        D.batches((x, np.zeros(4, np.int64)), 2, shuffle=False)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 60), batch_size=st.integers(1, 70), seed=st.integers(0, 1000), drop_last=st.booleans())
def test_batches_property(n, batch_size, seed, drop_last):
    x = np.arange(n, dtype=np.float32)[:, None]
    chunks = [xb[:, 0] for xb, _ in D.batches(x, batch_size, rng=Generator(seed), drop_last=drop_last)]
    seen = np.concatenate(chunks) if chunks else np.zeros(0)
    expected = n - n % batch_size if drop_last else n
    assert len(seen) == expected and len(np.unique(seen)) == expected
