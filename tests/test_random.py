"""minivae.random.Generator: explicit, seeded randomness."""

import numpy as np
import pytest

import minivae as mv


def test_same_seed_same_numbers():
    a = mv.random.Generator(7).normal((3, 4))
    b = mv.random.Generator(7).normal((3, 4))
    c = mv.random.Generator(8).normal((3, 4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_generator_state_round_trip():
    g = mv.random.Generator(3)
    state = g.get_state()
    first = g.normal(5)
    g.set_state(state)
    np.testing.assert_array_equal(g.normal(5), first)


def test_generator_requires_a_seed():
    with pytest.raises(ValueError, match="seed is required"):
        mv.random.Generator(None)


@pytest.mark.parametrize("seed", [1.5, 2.0, "3", True, np.float64(4.0)])
def test_generator_rejects_a_seed_that_is_not_an_integer(seed):
    with pytest.raises(TypeError, match=r"Generator\(seed\): the seed must be an integer"):
        mv.random.Generator(seed)


def test_generator_rejects_a_negative_seed_and_accepts_numpy_integers():
    with pytest.raises(ValueError, match="must be >= 0, got -1"):
        mv.random.Generator(-1)
    np.testing.assert_array_equal(mv.random.Generator(np.int64(5)).normal(3), mv.random.Generator(5).normal(3))
