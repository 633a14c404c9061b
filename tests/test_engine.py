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
    x = mv.tensor(np.ones((4, 3)), requires_grad=True, dtype="float32")
    b = mv.tensor(np.ones(3), requires_grad=True, dtype="float32")
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
    assert not y.requires_grad and y.parents == ()


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
        mv.tensor(np.ones((2, 2)), dtype="float32") @ mv.tensor(np.ones((2, 2)), dtype="float64")


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
        # log of a negative number is reported where NumPy meets it (as exp's overflow is): the op,
        # what it makes and the caller's line
        message = r"forward of 'log', which makes NaN \(called from test_engine\.py:\d+\)"
        with pytest.raises(mv.AnomalyError, match=message):
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


def test_numbers_and_integer_arrays_take_the_tensor_dtype_float_arrays_keep_theirs():
    x = mv.tensor([1.0, 2.0], requires_grad=True)  # float32
    y = x * np.array([2, 3]) + 1.5 * np.float64(2.0) + np.array(0.5)  # int array, scalars, 0-d array
    assert y.dtype == "float32"
    assert (x * np.array([2.0, 3.0], dtype=np.float32)).dtype == "float32"
    # a float64 array is what mv.tensor(array) would make: the same error as two tensors
    with pytest.raises(TypeError, match=r"mul: a raw float64 array of shape \(2,\) meets a float32 tensor"):
        x * np.array([2.0, 3.0])
    with pytest.raises(TypeError, match="float32.*float64"):
        x * mv.tensor(np.array([2.0, 3.0]))


# -- 0-d tensors and accumulation -----------------------------------------------------------
def test_a_0d_tensor_used_three_times_gets_every_contribution():
    x = mv.tensor(0.5, dtype="float64", requires_grad=True)
    (x + x + x).backward()
    assert x.grad == 3.0
    x.grad = None
    (x * x * x + x).backward()  # 3x² + 1
    assert x.grad == pytest.approx(1.75)


def test_accumulated_0d_grad_stays_an_array_and_keeps_adding():
    x = mv.tensor(2.0, dtype="float64", requires_grad=True)
    for _ in range(3):
        (x + x).backward()
        assert type(x.grad) is np.ndarray and x.grad.shape == ()
    assert x.grad == 6.0
    x.grad = np.float64(1.0)  # even a NumPy scalar someone stored is added to, not dropped
    (x * 1.0).backward()
    assert type(x.grad) is np.ndarray and x.grad == 2.0


def test_0d_reductions_with_axis_0_and_minus_1_as_in_pytorch():
    s = mv.tensor(1.5, dtype="float64", requires_grad=True)
    for axis in (0, -1, None, (0,)):
        assert mv.sum(s, axis).shape == () and mv.sum(s, axis).item() == 1.5
    assert mv.softmax(s).item() == 1.0 and mv.log_softmax(s).item() == 0.0 and mv.logsumexp(s).item() == 1.5
    with pytest.raises(ValueError, match="axis 1 is out of range for a tensor with 0 dimensions"):
        mv.sum(s, 1)


# -- conventions: construction and dtypes -------------------------------------------------
def test_tensor_keeps_a_float_arrays_dtype_and_copies_it():
    a = np.array([1.0, 2.0])
    t = mv.tensor(a)
    assert t.dtype == np.float64 and t.dtype == "float64" and t.dtype == np.dtype("float64")
    a[0] = 99.0
    assert t.numpy()[0] == 1.0  # a copy, as torch.tensor makes
    assert mv.tensor(a.astype(np.float32)).dtype == np.float32
    # numbers, lists, integer and bool arrays: float32, the default
    for data in (1.0, [1.0, 2.0], np.arange(3), np.array([True, False])):
        assert mv.tensor(data).dtype == np.float32
    assert mv.tensor(a, dtype="float32").dtype == "float32"
    assert str(mv.tensor(1.0).dtype) == "float32" and mv.tensor(1.0).dtype != np.float64


def test_low_level_constructor_defaults_to_float32():
    a = np.array([1.0, 2.0], dtype=np.float32)
    t = mv.Tensor(a)
    assert t.dtype == np.float32 and np.shares_memory(t.data, a)
    assert mv.Tensor(np.array([1.0])).dtype == "float32"


@pytest.mark.parametrize("data,message", [
    (np.array([1 + 2j, 3.0]), "complex values are not supported"),
    (1j, "complex values are not supported"),
    ([1.0, None], r"element 1 of the data is None"),
    (np.array([1.0, None], dtype=object), r"element 1 of the data is None"),
    (np.array(["a", "b"]), "not numeric"),
])
def test_tensor_refuses_data_it_would_silently_change(data, message):
    with pytest.raises(TypeError, match=message):
        mv.tensor(data)


def test_object_arrays_of_real_numbers_are_fine():
    assert mv.tensor(np.array([1.0, 2], dtype=object), dtype="float64").numpy().tolist() == [1.0, 2.0]


def test_comparisons_give_boolean_masks_equality_included():
    x = mv.tensor([1.0, -2.0, 3.0])
    mask = x > 0
    assert mask.dtype == bool and mask.tolist() == [True, False, True]
    assert (x <= 1.0).tolist() == [True, True, False] and mv.eq(x, 3.0).tolist() == [False, False, True]
    assert (x == mv.tensor([1.0, -2.0, 3.0])).tolist() == [True, True, True]  # elementwise (tests/test_interop.py)
    assert len({x, mv.tensor([1.0, -2.0, 3.0])}) == 2  # hash is identity: equal values, two set members


def test_parents_is_a_read_only_tuple_of_the_inputs():
    a = mv.tensor([1.0, 2.0], requires_grad=True)
    b = mv.tensor([3.0, 4.0], requires_grad=True)
    y = a * b + a
    assert isinstance(y.parents, tuple) and y.parents[1] is a and y.parents[0].parents == (a, b)
    assert a.parents == ()
    with pytest.raises(AttributeError):
        y.parents = ()
    y.sum().backward()  # the graph is freed: no parents left to walk
    assert y.parents == ()


def test_tensor_operators_call_the_ops_and_compare_elementwise():
    x = mv.tensor([[1.0, -2.0]], requires_grad=True)
    assert (x + 1).op == "add" and (1 - x).op == "sub" and (2 ** x).op == "pow" and x.T.shape == (2, 1)
    assert (x @ x.T).op == "matmul" and (-x).op == "neg" and abs(x).op == "abs" and x[0].op == "getitem"
    assert x.sum(axis=-1).op == "sum" and x.clip(low=0).op == "clip"
    np.testing.assert_array_equal(x > 0, [[True, False]])
    assert (x == x).tolist() == [[True, True]] and (x != x).tolist() == [[False, False]]  # masks, as < and >


def test_array_module_names_the_module_of_a_tensor():
    assert mv.ops.array_module(mv.tensor([1.0])) is np
