"""A tensor handed to NumPy, matplotlib and Python's conversions: the rules of minivae/interop.py.

Each of these was a silent trap before (object arrays of 0-d tensors, `float(t)` failing,
`bool` of many elements True, `==` meaning identity).
"""

from __future__ import annotations

import pickle
import re

import matplotlib
import numpy as np
import pytest

import minivae as mv

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _plain():
    return mv.tensor([[1.0, 2.0], [3.0, 4.0]])


# -- the array protocol ----------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_asarray_of_a_tensor_without_grad_gives_its_values_never_an_object_array(dtype):
    t = mv.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=dtype)
    a = np.asarray(t)
    assert a.dtype == np.dtype(dtype) and a.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert np.asarray(t, dtype=np.float64).dtype == np.float64
    assert np.array(mv.tensor(2.5)).shape == () and float(np.array(mv.tensor(2.5))) == 2.5  # 0-d
    assert np.asarray(t.T).tolist() == [[1.0, 3.0], [2.0, 4.0]]  # a transposed view
    stacked = np.asarray([mv.tensor(1.0), mv.tensor(2.0)])  # a list of 0-d tensors
    assert stacked.dtype == np.float32 and stacked.tolist() == [1.0, 2.0]
    assert np.asarray(mv.tensor(np.zeros((0, 3)))).shape == (0, 3)


def test_asarray_refuses_a_tensor_that_requires_grad_and_names_detach():
    w = mv.tensor([1.0, 2.0], requires_grad=True)
    for convert in (np.asarray, np.array, lambda t: np.asarray([t, t])):
        with pytest.raises(TypeError, match=r"requires grad.*detach\(\)"):
            convert(w)
    assert np.asarray(w.detach()).tolist() == [1.0, 2.0]
    assert w.numpy().tolist() == [1.0, 2.0]  # the explicit conversion works (differs from PyTorch, documented)
    with mv.no_grad():
        assert np.asarray(w * 2).tolist() == [2.0, 4.0]  # computed without a graph: plain values


def test_numpy_ufuncs_run_the_minivae_op_and_keep_the_gradient():
    x = mv.tensor([0.5, -1.0, 2.0], requires_grad=True, dtype="float64")
    y = np.exp(x)
    assert isinstance(y, mv.Tensor) and y.op == "exp"
    (np.add(y, np.ones(3)) * x).sum().backward()
    np.testing.assert_allclose(x.grad, np.exp(x.data) * x.data + np.exp(x.data) + 1.0)
    z = np.ones(3) + x  # ndarray on the left: the tensor's op, not an object array
    assert isinstance(z, mv.Tensor) and z.requires_grad
    assert (np.ones(3) < x).tolist() == [False, False, True]


def test_other_ufuncs_work_on_values_or_refuse_with_the_fix():
    t = mv.tensor([1.0, 8.0, 27.0])
    np.testing.assert_allclose(np.cbrt(t), [1.0, 2.0, 3.0])  # no minivae op: NumPy on the values
    assert np.add.reduce(t) == 36.0
    w = mv.tensor([1.0, 8.0], requires_grad=True)
    with pytest.raises(TypeError, match=r"np\.cbrt: .*requires grad.*detach\(\)"):
        np.cbrt(w)
    with pytest.raises(TypeError, match=r"np\.exp: .*detach\(\).*mv\.exp"):
        np.exp(w, out=np.empty(2, dtype=np.float32))


def test_numpy_functions_mean_sum_std_follow_numpy_and_keep_the_gradient():
    data = np.array([[1.0, 2.0, 4.0], [3.0, 5.0, 9.0]])
    x = mv.tensor(data, requires_grad=True, dtype="float64")
    m = np.mean(x)
    assert isinstance(m, mv.Tensor) and float(m) == pytest.approx(data.mean())
    m.backward()
    np.testing.assert_allclose(x.grad, np.full((2, 3), 1 / 6))
    np.testing.assert_allclose(np.sum(x, axis=-1).data, data.sum(axis=-1))
    np.testing.assert_allclose(np.sum(x, axis=0, keepdims=True).data, data.sum(axis=0, keepdims=True))
    np.testing.assert_allclose(np.std(x).data, data.std())  # NumPy's ddof=0, not minivae's correction=1
    np.testing.assert_allclose(np.var(x, ddof=1, axis=1).data, data.var(ddof=1, axis=1))
    np.testing.assert_allclose(np.max(x, axis=1).data, data.max(axis=1))
    assert np.concatenate([x, x], axis=1).shape == (2, 6) and np.transpose(x).shape == (3, 2)
    assert np.shape(x) == (2, 3) and np.ndim(x) == 2 and np.size(x) == 6  # shape queries: any tensor
    assert np.median(_plain()) == 2.5  # no minivae op: the values
    with pytest.raises(TypeError, match="np.median: .*requires grad"):
        np.median(x)
    assert np.mean(_plain(), dtype=np.float64).dtype == np.float64  # dtype=: NumPy's own, on the values


def test_matplotlib_takes_tensors():
    fig, ax = plt.subplots()
    try:
        image = ax.imshow(_plain())
        assert image.get_array().dtype == np.float32 and image.get_array().shape == (2, 2)
        (line,) = ax.plot(mv.tensor([3.0, 1.0, 2.0]))
        assert line.get_ydata().tolist() == [3.0, 1.0, 2.0]
    finally:
        plt.close(fig)


# -- Python numbers and truth -------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(), (1,), (1, 1)])
def test_one_element_tensors_convert_to_python_numbers(shape):
    t = mv.tensor(np.full(shape, -2.75), requires_grad=True)  # a gradient does not matter, as in PyTorch
    assert float(t) == -2.75 and t.item() == -2.75 and isinstance(t.item(), float)
    assert int(t) == -2  # toward zero, as int(-2.75)
    assert bool(t) is True and bool(mv.tensor(np.zeros(shape))) is False


def test_larger_tensors_refuse_python_numbers_and_say_how_many_elements():
    t = mv.tensor(np.ones((2, 3)))
    for convert, name in ((float, "float"), (int, "int"), (lambda u: u.item(), r"item\(\)")):
        with pytest.raises(ValueError, match=rf"{name}.*shape \(2, 3\) \(6 elements\)"):
            convert(t)
    with pytest.raises(ValueError, match=r"bool\(tensor\).*2 elements.*ambiguous"):
        bool(mv.tensor([1.0, 2.0]))
    with pytest.raises(ValueError, match="0 elements"):
        bool(mv.tensor(np.zeros(0)))
    with pytest.raises(ValueError, match="ambiguous"):
        if mv.tensor([0.0, 0.0]) and True:
            pass


def test_tolist_and_numpy():
    assert mv.tensor([[1.0, 2.0]]).tolist() == [[1.0, 2.0]]
    assert mv.tensor(3.0).tolist() == 3.0 and mv.tensor(np.zeros((0, 2))).tolist() == []
    w = mv.tensor([1.5], requires_grad=True, dtype="float64")
    assert w.tolist() == [1.5] and w.numpy().dtype == np.float64
    with pytest.raises(TypeError, match="0-d"):
        len(mv.tensor(1.0))


# -- == and != ----------------------------------------------------------------------------------

def test_equality_is_elementwise_and_hash_stays_identity():
    a, b = mv.tensor([1.0, 2.0, 3.0]), mv.tensor([1.0, 0.0, 3.0])
    assert (a == b).tolist() == [True, False, True] and (a != b).tolist() == [False, True, False]
    assert (a == 2.0).tolist() == [False, True, False] and (a == np.ones(3, dtype=np.float32)).tolist()[0]
    assert (mv.tensor([[1.0], [2.0]]) == mv.tensor([1.0, 2.0])).shape == (2, 2)  # broadcasting both ways
    assert bool(mv.tensor(1.0) == mv.tensor(1.0)) is True  # 0-d: its truth value
    assert (a == None) is False and (a != "a") is True  # noqa: E711 - not numbers: identity, no error
    twin = mv.tensor([1.0, 2.0, 3.0])
    seen = {a: "a", twin: "twin"}  # equal values, distinct keys: hash and dict lookup are by identity
    assert len(seen) == 2 and seen[a] == "a" and seen[twin] == "twin" and a in {a} and twin not in {a}
    params = [a, b]
    assert any(p is b for p in params) and not any(p is twin for p in params)  # membership by identity


@pytest.mark.parametrize("ask, sym", [
    (lambda a, b: bool(a == b), "=="),
    (lambda a, b: b in [a, b], "=="),  # `in` tests == against a first
    (lambda a, b: max(a, b), ">"),
    (lambda a, b: min(a, b), "<"),
    (lambda a, b: sorted([a, b]), "<"),
    (lambda a, b: bool(a[None] <= b[:, None]), "<="),  # broadcast both ways: 9 elements
])
def test_the_truth_of_a_comparison_names_it_and_the_way_out(ask, sym):
    a, b = mv.tensor([1.0, 2.0, 3.0]), mv.tensor([3.0, 2.0, 1.0])
    with pytest.raises(ValueError, match=rf"^bool\(a {re.escape(sym)} b\): comparing tensors is elementwise \((3|9) elements") as err:
        ask(a, b)
    message = str(err.value)
    assert "\n" not in message and ".all()" in message and "x is t" in message and "mv.maximum" in message


def test_a_comparison_is_a_numpy_array_in_every_other_way():
    a, b = mv.tensor([[1.0, -2.0]]), mv.tensor([[0.0], [5.0]])
    mask = a > b
    assert isinstance(mask, np.ndarray) and mask.dtype == bool and mask.shape == (2, 2)
    assert repr(mask) == repr(np.array([[True, False], [False, False]]))
    for derived in (mask * 1.0, mask & mask, ~mask, np.asarray(mask), mask == True):  # noqa: E712
        assert type(derived) is np.ndarray
    assert mask.any() and not mask.all() and type(mask.sum()) is not np.ndarray and mask.sum() == 1
    assert mv.where(mask, a, b).tolist() == [[1.0, 0.0], [5.0, 5.0]]
    assert a.data[a > 0].tolist() == [1.0] and a[a > 0].tolist() == [1.0]  # indexing with the mask
    assert bool(mv.tensor(2.0) > 1.0) is True and bool(mv.tensor([2.0]) < 1.0) is False  # one element: its truth
    assert bool(mv.tensor([[2.0]]) == mv.tensor(2.0)) is True
    with pytest.raises(ValueError, match=r"0 elements, shape \(0,\)"):
        bool(mv.tensor(np.zeros(0)) < 1.0)
    restored = pickle.loads(pickle.dumps(mask))
    assert np.array_equal(restored, mask)
    noncontiguous = mv.tensor(np.arange(12.0).reshape(3, 4).T)  # a transposed view
    assert (noncontiguous >= 5.0).sum() == 7 and (noncontiguous >= 5.0)[0, :].tolist() == [False, False, True]


def test_optimizers_and_modules_still_find_their_parameters_by_identity():
    rng = mv.random.Generator(0)
    net = mv.nn.Sequential(mv.nn.Linear(2, 2, rng=rng), mv.nn.Linear(2, 2, rng=rng))
    net[1].weight.data[...] = net[0].weight.data  # equal values in two parameters
    names = [n for n, _ in net.named_parameters()]
    assert len(names) == len(set(names)) == 4
    opt = mv.optim.Adam(net.parameters(), lr=0.1)
    net(mv.tensor([[1.0, 2.0]])).sum().backward()
    before = [p.data.copy() for p in net.parameters()]
    opt.step()
    assert all(not np.array_equal(p.data, b) for p, b in zip(net.parameters(), before))


# -- Python habits on a loss: f-strings, round(), iteration, item assignment (found in QA) ----------

def test_format_spec_on_a_one_element_tensor_formats_its_value_like_a_float():
    loss = (mv.tensor([[1.0, 2.0]], requires_grad=True) ** 2).sum()  # a 0-d loss with a gradient
    assert f"{loss:.3f}" == "5.000" and f"{loss:>8.1f}" == "     5.0" and f"{loss:.2e}" == "5.00e+00"
    assert f"{mv.tensor([2.5]):g}" == "2.5" and f"{mv.tensor([[7.0]]):d}" == "7"  # whole: int formats too
    assert f"{loss}" == str(loss) and format(mv.tensor([1.0, 2.0])) == str(mv.tensor([1.0, 2.0]))  # no spec: str
    with pytest.raises(TypeError, match=r"format.*'\.3f'.*shape \(2,\) \(2 elements\).*item\(\)"):
        f"{mv.tensor([1.0, 2.0]):.3f}"
    with pytest.raises(ValueError, match="'d'"):
        f"{mv.tensor(2.5):d}"  # not a whole number: Python's own error for float


def test_round_of_a_one_element_tensor_is_a_python_number():
    loss = mv.tensor(2.71828, requires_grad=True, dtype="float64")
    assert round(loss, 2) == 2.72 and isinstance(round(loss, 2), float)
    assert round(loss) == 3 and isinstance(round(loss), int)
    assert round(mv.tensor([[-0.5]])) == 0  # banker's rounding, as round(-0.5)
    with pytest.raises(TypeError, match=r"round\(tensor\).*4 elements"):
        round(mv.tensor(np.ones((2, 2))))


def test_iterating_a_0d_tensor_is_an_error_not_an_empty_loop():
    rows = list(mv.tensor([[1.0, 2.0], [3.0, 4.0]]))
    assert [r.tolist() for r in rows] == [[1.0, 2.0], [3.0, 4.0]]
    assert list(mv.tensor(np.zeros((0, 3)))) == []  # empty: no rows
    with pytest.raises(TypeError, match="iterate over a 0-d tensor"):
        for _ in mv.tensor(3.0):
            pass


def test_item_assignment_says_how_to_do_it_instead():
    t = mv.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(TypeError, match=r"t\[\.\.\.\] = .*mv\.where.*t\.data\[\.\.\.\] = value"):
        t[0] = 5.0
    assert t.tolist() == [1.0, 2.0]


def test_indexing_with_a_tensor_of_indices_names_the_cause_and_the_fix():
    x = mv.tensor(np.arange(6.0).reshape(3, 2), requires_grad=True)
    for key in (mv.tensor([2, 0]), mv.tensor(1), (mv.tensor([0, 1]), 0)):  # mv.tensor([2, 0]) is float32
        with pytest.raises(IndexError, match=r"getitem: .*float32 tensor.*always float.*integer NumPy array or a list"):
            x[key]
    assert x[np.array([2, 0])].tolist() == [[4.0, 5.0], [0.0, 1.0]] and x[x > 2].tolist() == [3.0, 4.0, 5.0]


def test_plotting_a_list_of_losses_that_require_grad_points_to_item():
    """Found in QA: `losses.append(loss)` then `plt.plot(losses)`, the first thing a student plots."""
    w = mv.tensor([1.0, 2.0], requires_grad=True)
    losses = [(w * w).sum(), (w * 3.0).sum()]
    with pytest.raises(TypeError, match=r"requires grad.*for a loss to plot or log, use loss\.item\(\) \(a float\)"):
        plt.plot(losses)
    with pytest.raises(TypeError, match=r"requires grad.*detach\(\)") as matrix:
        np.asarray(w)
    assert "item()" not in str(matrix.value)  # only a one-element tensor gets the hint
    plt.plot([loss.item() for loss in losses])
    plt.close("all")


def test_printing_a_parameter_shows_its_name():
    net = mv.nn.Sequential(mv.nn.Linear(2, 1, rng=mv.random.Generator(0)))
    assert repr(net[0].bias).endswith("dtype=float32, requires_grad=True, name='0.bias')")
    assert "name=" not in repr(mv.tensor([1.0]) * 2.0) and str(net[0].bias) == repr(net[0].bias)


def test_a_mask_in_place_keeps_its_identity_and_pickles_its_comparison():
    """Found in QA: m |= other returned a new plain array; pickling forgot which comparison it was;
    m.astype(float) stayed a Mask whose truth spoke of comparing tensors."""
    a = mv.tensor([1.0, 2.0, 3.0])
    mask = a > 1.5
    alias = mask
    mask |= a < 1.5
    assert mask is alias and mask.all()
    assert np.logical_and(mask, a.data > 0, out=mask) is mask
    numbers = (a > 1.5).astype(np.float32)
    assert type(numbers) is np.ndarray and numbers.tolist() == [0.0, 1.0, 1.0]
    restored = pickle.loads(pickle.dumps(a <= 2.0))
    with pytest.raises(ValueError, match=r"^bool\(a <= b\)"):
        bool(restored)


def test_np_argmax_of_a_tensor_that_requires_grad_gives_indices():
    logits = mv.tensor([[0.1, 2.0, -1.0], [3.0, 0.0, 0.5]], requires_grad=True)
    assert np.argmax(logits, axis=1).tolist() == [1, 0] and np.argmin(logits) == 2
    assert logits.argmax(axis=np.int64(1)).tolist() == [1, 0]  # a NumPy integer axis, as the reductions take
    with pytest.raises(ValueError, match="out of range"):
        logits.argmax(axis=True)  # a bool is not an axis
