"""Every op's backward against central differences in float64 (mv.gradcheck)."""

import numpy as np
import pytest

import minivae as mv

RNG = np.random.default_rng(1234)


def t(shape, low=-2.0, high=2.0, requires_grad=True):
    return mv.tensor(RNG.uniform(low, high, size=shape), requires_grad=requires_grad, dtype="float64")


def positive(shape):
    return t(shape, 0.3, 3.0)


UNARY = [
    ("neg", lambda x: -x, t),
    ("exp", mv.exp, t),
    ("log", mv.log, positive),
    ("sqrt", mv.sqrt, positive),
    ("abs", mv.abs, t),
    ("sin", mv.sin, t),
    ("cos", mv.cos, t),
    ("relu", mv.relu, t),
    ("leaky_relu", lambda x: mv.leaky_relu(x, 0.1), t),
    ("sigmoid", mv.sigmoid, t),
    ("tanh", mv.tanh, t),
    ("softplus", mv.softplus, t),
    ("pow2", lambda x: x**2, t),
    ("pow3", lambda x: x**3, t),
    ("pow_half", lambda x: x**0.5, positive),
    ("pow_neg", lambda x: x ** -1.5, positive),
    ("clip", lambda x: mv.clip(x, -1.0, 1.0), t),
    ("sum_all", lambda x: x.sum(), t),
    ("sum_axis0", lambda x: x.sum(axis=0), t),
    ("sum_keep", lambda x: x.sum(axis=1, keepdims=True), t),
    ("mean_all", lambda x: x.mean(), t),
    ("mean_axes", lambda x: x.mean(axis=(0, 1)), t),
    ("reshape", lambda x: x.reshape(-1), t),
    ("transpose", lambda x: x.transpose(), t),
    ("T", lambda x: x.T * 2.0, t),
    ("slice", lambda x: x[1:, ::2], t),
    ("int_index", lambda x: x[0], t),
    ("fancy_repeat", lambda x: x[[0, 0, 1]], t),
    ("mask", lambda x: x[x.data > 0], t),
    ("logsumexp_last", lambda x: mv.logsumexp(x, axis=-1), t),
    ("logsumexp_first_keep", lambda x: mv.logsumexp(x, axis=0, keepdims=True), t),
    ("log_softmax", lambda x: mv.log_softmax(x, axis=-1), t),
    ("softmax", lambda x: mv.softmax(x, axis=0), t),
]


@pytest.mark.parametrize("shape", [(3, 4, 2), (2, 5)])
@pytest.mark.parametrize("name,fn,make", UNARY, ids=[u[0] for u in UNARY])
def test_unary_ops_gradcheck(name, fn, make, shape):
    x = make(shape)
    report = mv.gradcheck(fn, [x])
    assert report.ok


BINARY_SHAPES = [((3, 4), (3, 4)), ((3, 4), (4,)), ((3, 1), (1, 4)), ((2, 3, 4), (3, 1)), ((4,), ())]


@pytest.mark.parametrize("a_shape,b_shape", BINARY_SHAPES)
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div"])
def test_binary_ops_with_broadcasting(op, a_shape, b_shape):
    a, b = t(a_shape), positive(b_shape)
    fn = {"add": lambda x, y: x + y, "sub": lambda x, y: x - y, "mul": lambda x, y: x * y, "div": lambda x, y: x / y}[op]
    assert mv.gradcheck(fn, [a, b]).ok
    assert mv.gradcheck(lambda x, y: fn(y, x), [a, b]).ok  # reflected order


@pytest.mark.parametrize("a_shape,b_shape", [((3, 4), (4, 5)), ((2, 3, 4), (4, 2)), ((4,), (4, 3)), ((3, 4), (4,)), ((4,), (4,)), ((1, 1), (1, 1))])
def test_matmul_gradcheck(a_shape, b_shape):
    assert mv.gradcheck(lambda a, b: a @ b, [t(a_shape), t(b_shape)]).ok


@pytest.mark.parametrize("x_shape", [(5, 3), (2, 4, 3), (3,)])
def test_linear_node_gradcheck_and_matches_composition(x_shape):
    x, w, b = t(x_shape), t((3, 2)), t((2,))
    assert mv.gradcheck(mv.linear, [x, w, b]).ok
    assert mv.gradcheck(lambda x, w: mv.linear(x, w), [x, w]).ok
    np.testing.assert_allclose(mv.linear(x, w, b).numpy(), (x @ w + b).numpy(), rtol=1e-12)


def test_concat_gradcheck():
    a, b, c = t((2, 3)), t((4, 3)), t((1, 3))
    assert mv.gradcheck(lambda a, b, c: mv.concat([a, b, c], axis=0) * 1.5, [a, b, c]).ok
    assert mv.gradcheck(lambda a, b: mv.concat([a, b.T[:, :2]], axis=1), [t((4, 3)), t((3, 4))]).ok


def test_astype_gradient_flows_back_in_source_dtype():
    x = mv.tensor([1.0, 2.0], requires_grad=True)  # float32
    y = (x.astype("float64") * 3.0).sum()
    y.backward()
    assert x.grad.dtype == np.float32
    np.testing.assert_allclose(x.grad, [3.0, 3.0])


def test_bce_with_logits_node_gradcheck_including_target():
    logits, target = t((4, 3), -6, 6), t((4, 3), 0.0, 1.0)
    assert mv.gradcheck(mv.bce_with_logits, [logits, target]).ok


def test_relu_at_zero_uses_zero_subgradient():
    x = mv.tensor([-1.0, 0.0, 2.0], requires_grad=True)
    mv.relu(x).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0, 1.0])


def test_abs_at_zero_uses_zero_subgradient():
    x = mv.tensor([-3.0, 0.0, 2.0], requires_grad=True)
    mv.abs(x).sum().backward()
    np.testing.assert_array_equal(x.grad, [-1.0, 0.0, 1.0])


@pytest.mark.parametrize("fn", [mv.sigmoid, mv.softplus, mv.tanh], ids=["sigmoid", "softplus", "tanh"])
def test_saturating_functions_are_finite_for_huge_inputs(fn):
    x = mv.tensor([-1e4, -50.0, 0.0, 50.0, 1e4], requires_grad=True, dtype="float64")
    with mv.detect_anomaly():
        y = fn(x)
        y.sum().backward()
    assert np.all(np.isfinite(y.numpy())) and np.all(np.isfinite(x.grad))


def test_softplus_matches_log1p_exp_where_that_is_safe():
    x = np.linspace(-20, 20, 41)
    np.testing.assert_allclose(mv.softplus(mv.tensor(x, dtype="float64")).numpy(), np.log1p(np.exp(x)), rtol=1e-12)


def test_logsumexp_is_stable_and_exact():
    x = np.array([[1000.0, 1000.0], [-1000.0, -1001.0]])
    out = mv.logsumexp(mv.tensor(x, dtype="float64"), axis=-1).numpy()
    np.testing.assert_allclose(out, [1000 + np.log(2), -1000 + np.log1p(np.exp(-1))], rtol=1e-12)
    all_neg_inf = mv.logsumexp(mv.tensor([[-np.inf, -np.inf]], dtype="float64"), axis=-1).numpy()
    assert all_neg_inf[0] == -np.inf


def test_logsumexp_gradient_with_large_values():
    x = mv.tensor(RNG.uniform(-1, 1, (3, 4)) + 500.0, requires_grad=True, dtype="float64")
    assert mv.gradcheck(lambda x: mv.logsumexp(x, axis=1), [x]).ok


@pytest.mark.parametrize("kernels", ["reference", "custom"])
@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "sigmoid", "tanh", "softplus"])
def test_fused_linear_activation_node_gradcheck(activation, kernels):
    x, w, b = t((5, 3)), t((3, 4)), t((4,))
    with mv.use_kernels(kernels):
        fn = lambda x, w, b: mv.linear(x, w, b, activation=activation, slope=0.1)  # noqa: E731
        assert mv.gradcheck(fn, [x, w, b]).ok
        assert mv.gradcheck(lambda x, w: mv.linear(x, w, activation=activation, slope=0.1), [x, w]).ok


# -- the edge cases once found wrong, by name (tests/test_op_table.py covers each class) -----
def test_bce_with_logits_on_0d_inputs_on_every_kernel_set():
    for kernels in ("reference", "custom", "auto"):
        with mv.use_kernels(kernels):
            value = mv.bce_with_logits(mv.tensor(0.5), mv.tensor(0.0)).item()
        assert value == pytest.approx(np.log1p(np.exp(0.5)), rel=1e-6), kernels  # 0.974, not 0.474


def test_gradient_of_x_to_the_0_at_0_is_0_not_nan():
    x = mv.tensor([0.0, 2.0], requires_grad=True, dtype="float64")
    (x ** 0).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 0.0])


def test_clip_with_one_bound_and_none():
    x = mv.tensor([-2.0, 0.0, 2.0], requires_grad=True, dtype="float64")
    mv.clip(x, None, 1.0).sum().backward()
    np.testing.assert_array_equal(x.grad, [1.0, 1.0, 0.0])
    x.grad = None
    mv.clip(x, -1.0, None).sum().backward()
    np.testing.assert_array_equal(x.grad, [0.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="clip: both bounds are None"):
        mv.clip(x, None, None)


def test_matmul_backward_with_zero_size_dimensions():
    a = mv.tensor(np.zeros((0, 3)), requires_grad=True)
    b = mv.tensor(np.ones((3, 2)), requires_grad=True)
    (a @ b).sum().backward()
    assert a.grad.shape == (0, 3) and b.grad.shape == (3, 2) and not b.grad.any()


def test_batched_matmul_sums_gradients_over_broadcast_batch_axes():
    a, b = t((2, 1, 3, 4)), t((5, 4, 2))  # batch (2, 1) with (5,) -> (2, 5)
    assert (a @ b).shape == (2, 5, 3, 2)
    assert mv.gradcheck(lambda a, b: a @ b, [a, b]).ok


def test_transpose_takes_negative_axes_and_concat_takes_dtype_from_any_tensor():
    x = t((2, 3, 4))
    assert x.transpose(-1, 0, -2).shape == (4, 2, 3)
    f64 = mv.tensor(np.ones((1, 2)), dtype="float64")
    for parts in ([[[0.0, 1.0]], f64], [f64, [[0.0, 1.0]]]):  # raw values before or after the tensor
        assert mv.concat(parts).dtype == "float64"


def test_softplus_with_beta():
    x = t((3, 2))
    np.testing.assert_allclose(mv.softplus(x, beta=2.0).numpy(), np.logaddexp(0, 2 * x.numpy()) / 2, rtol=1e-12)
    assert mv.gradcheck(lambda x: mv.softplus(x, beta=2.0), [x]).ok
    big = mv.tensor([-800.0, 0.0, 800.0], dtype="float64")  # no overflow for large beta·x
    np.testing.assert_allclose(mv.softplus(big, beta=3.0).numpy(), [0.0, np.log(2) / 3, 800.0], rtol=1e-12)
    for wrong in (0.0, -1.0, float("inf"), float("nan")):
        with pytest.raises(ValueError, match="softplus: beta"):
            mv.softplus(x, beta=wrong)


def test_one_hot_values_for_the_models_labels():
    """mv.one_hot is the one one-hot (the CVAE's condition, the examples' targets): float32 codes
    of shape labels.shape + (C,), one 1 per row."""
    codes = mv.one_hot(np.array([2, 0, 1, 2]), 3)
    assert codes.dtype == np.float32 and codes.shape == (4, 3) and not codes.requires_grad
    np.testing.assert_array_equal(codes.numpy().argmax(axis=1), [2, 0, 1, 2])
    np.testing.assert_array_equal(codes.numpy().sum(axis=1), 1.0)
    assert mv.one_hot(np.array([[1], [0]]), 2).shape == (2, 1, 2)
    assert mv.one_hot(np.array([], dtype=np.int64), 4).shape == (0, 4)


@pytest.mark.parametrize("labels,num_classes,error,match", [
    ([0, -1], 3, ValueError, r"\[0, 3\)"),
    ([0, 3], 3, ValueError, r"\[0, 3\)"),
    ([0.0, 1.5], 3, TypeError, "integers"),
    ([True, False], 2, TypeError, "integers"),
    ([0, 1], 0, ValueError, r"\[0, 0\)"),
    ([0, 1], 2.0, TypeError, "num_classes must be an integer"),
])
def test_one_hot_errors_name_the_op(labels, num_classes, error, match):
    with pytest.raises(error, match=f"one_hot: .*{match}"):
        mv.one_hot(np.array(labels), num_classes)
