"""The reverse-mode engine: accumulation, graph freeing, modes, dtypes, errors."""

import numpy as np
import pytest

import minivae as mv


def test_gradients_accumulate_across_backward_calls_and_fan_out():
    x = mv.tensor([1.0, 2.0, 3.0], requires_grad=True, dtype="float64")
    (x * x + x).sum().backward()  # x used three times
    np.testing.assert_allclose(x.grad, 2 * x.numpy() + 1)
    (3.0 * x).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.numpy() + 1 + 3)


def test_leaf_grads_never_alias_each_other():
    a = mv.tensor([1.0, 2.0], requires_grad=True)
    b = mv.tensor([3.0, 4.0], requires_grad=True)
    (a + b).sum().backward()  # add passes the same upstream array to both
    a.grad *= 10
    np.testing.assert_array_equal(b.grad, [1.0, 1.0])


def test_broadcast_gradients_are_summed_to_the_input_shape():
    x = mv.tensor(np.ones((4, 3)), requires_grad=True)
    b = mv.tensor(np.ones(3), requires_grad=True)
    s = mv.tensor(2.0, requires_grad=True)
    (x * b * s).sum().backward()
    assert b.grad.shape == (3,) and s.grad.shape == ()
    np.testing.assert_allclose(b.grad, [8.0, 8.0, 8.0])
    np.testing.assert_allclose(s.grad, 12.0)


def test_second_backward_through_freed_graph_raises_clear_error():
    x = mv.tensor([1.0, 2.0], requires_grad=True)
    y = (mv.exp(x) * 2).sum()
    y.backward()
    with pytest.raises(mv.GraphFreedError, match="already freed"):
        y.backward()


def test_retain_graph_allows_a_second_backward():
    x = mv.tensor([1.0, 2.0], requires_grad=True, dtype="float64")
    y = (x * x).sum()
    y.backward(retain_graph=True)
    y.backward()
    np.testing.assert_allclose(x.grad, 4 * x.numpy())


def test_backward_on_non_scalar_needs_a_seed():
    x = mv.tensor([1.0, 2.0], requires_grad=True)
    y = x * 3
    with pytest.raises(RuntimeError, match="seed gradient"):
        y.backward()
    y.backward(np.array([1.0, 10.0]))
    np.testing.assert_allclose(x.grad, [3.0, 30.0])


def test_seed_of_wrong_shape_is_rejected():
    x = mv.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(ValueError, match="seed gradient has shape"):
        (x * 2).backward(np.ones(3))


def test_backward_without_grad_requirement_is_an_error():
    with pytest.raises(RuntimeError, match="does not require grad"):
        mv.tensor([1.0]).sum().backward()


def test_no_grad_records_nothing():
    x = mv.tensor([1.0], requires_grad=True)
    with mv.no_grad():
        y = x * 2
        assert not mv.is_grad_enabled()
    assert mv.is_grad_enabled()
    assert not y.requires_grad and y._parents == ()


def test_detach_cuts_the_graph():
    x = mv.tensor([2.0], requires_grad=True)
    y = x * x.detach()
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [2.0])


def test_retain_grad_keeps_intermediate_gradient():
    x = mv.tensor([1.0, 2.0], requires_grad=True)
    h = (x * 3).retain_grad()
    (h * h).sum().backward()
    np.testing.assert_allclose(h.grad, 2 * h.numpy())


def test_float32_is_default_and_preserved_end_to_end():
    x = mv.tensor([[1.0, 2.0]], requires_grad=True)
    w = mv.tensor([[0.5], [0.25]], requires_grad=True)
    y = mv.sigmoid(x @ w) * 2.0 + 1
    assert x.dtype == "float32" and y.dtype == "float32"
    y.sum().backward()
    assert x.grad.dtype == np.float32 and w.grad.dtype == np.float32


def test_mixing_float32_and_float64_tensors_is_an_error():
    a = mv.tensor([1.0])
    b = mv.tensor([1.0], dtype="float64")
    with pytest.raises(TypeError, match="float32.*float64"):
        a + b
    with pytest.raises(TypeError, match="matmul"):
        mv.tensor(np.ones((2, 2))) @ mv.tensor(np.ones((2, 2)), dtype="float64")


def test_integer_dtype_is_rejected():
    with pytest.raises(TypeError, match="float32 or float64"):
        mv.tensor([1, 2], dtype="int64")


def test_matmul_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"matmul: inner dimensions differ: \(2, 3\) @ \(4, 5\)"):
        mv.tensor(np.ones((2, 3))) @ mv.tensor(np.ones((4, 5)))


def test_broadcast_mismatch_names_op_and_shapes():
    with pytest.raises(ValueError, match=r"add: shapes \(2, 3\) and \(4,\)"):
        mv.tensor(np.ones((2, 3))) + mv.tensor(np.ones(4))


def test_detect_anomaly_names_the_forward_op():
    x = mv.tensor([-1.0, 1.0], requires_grad=True)
    with mv.detect_anomaly():
        with pytest.raises(mv.AnomalyError, match=r"forward of 'log'.*NaN.*\(2,\)"):
            mv.log(x)


@pytest.mark.filterwarnings("ignore:divide by zero")
def test_detect_anomaly_names_the_backward_op():
    x = mv.tensor([0.0, 1.0], requires_grad=True)
    with mv.detect_anomaly():
        y = mv.sqrt(x).sum()  # forward finite, d/dx sqrt at 0 is inf
        with pytest.raises(mv.AnomalyError, match=r"backward of 'sqrt'.*Inf"):
            y.backward()


def test_deep_chain_does_not_hit_recursion_limit():
    x = mv.tensor([1.0], requires_grad=True, dtype="float64")
    y = x
    for _ in range(5000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(x.grad, [1.0001**5000], rtol=1e-9)


def test_scalar_and_array_constants_take_the_tensor_dtype():
    x = mv.tensor([1.0, 2.0], requires_grad=True)
    y = x * np.array([2.0, 3.0]) + 1.5  # float64 constants
    assert y.dtype == "float32"


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
