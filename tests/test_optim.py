"""Optimizers against their update formulas, clipping, and state round trips."""

import re

import numpy as np
import pytest

import minivae as mv
from minivae import optim


def param(values):
    return mv.tensor(np.asarray(values, dtype=np.float64), requires_grad=True, dtype="float64")


def test_sgd_momentum_and_weight_decay_match_formula():
    p = param([1.0, -2.0])
    opt = optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01)
    theta, v = p.numpy().copy(), np.zeros(2)
    for grad in ([0.5, 1.0], [-0.25, 0.75], [1.0, 1.0]):
        p.grad = np.array(grad)
        opt.step()
        g = np.array(grad) + 0.01 * theta
        v = 0.9 * v + g
        theta = theta - 0.1 * v
        np.testing.assert_allclose(p.numpy(), theta, rtol=1e-12)


def test_adam_matches_reference_formula():
    p = param([0.3, -0.7, 1.1])
    opt = optim.Adam([p], lr=0.01, betas=(0.8, 0.95), eps=1e-6)
    theta, m, v = p.numpy().copy(), np.zeros(3), np.zeros(3)
    rng = np.random.default_rng(0)
    for t in range(1, 6):
        g = rng.normal(size=3)
        p.grad = g.copy()
        opt.step()
        m = 0.8 * m + 0.2 * g
        v = 0.95 * v + 0.05 * g * g
        theta = theta - 0.01 * (m / (1 - 0.8**t)) / (np.sqrt(v / (1 - 0.95**t)) + 1e-6)
        np.testing.assert_allclose(p.numpy(), theta, rtol=1e-10)


def test_adam_minimises_a_quadratic():
    p = param([5.0, -3.0])
    opt = optim.Adam([p], lr=0.1)
    for _ in range(500):
        opt.zero_grad()
        ((p - 1.0) ** 2).sum().backward()
        opt.step()
    np.testing.assert_allclose(p.numpy(), [1.0, 1.0], atol=1e-3)


def test_optimizer_state_round_trip_resumes_identically():
    def run(steps, resume_from=None):
        p = param([1.0, 2.0])
        opt = optim.Adam([p], lr=0.05)
        if resume_from is not None:
            p.data[...] = resume_from[0]
            opt.load_state_dict(resume_from[1])
        for _ in range(steps):
            opt.zero_grad()
            (p * p * p).sum().backward()
            opt.step()
        return p.numpy().copy(), opt.state_dict()

    straight, _ = run(6)
    half_params, half_state = run(3)
    resumed, _ = run(3, resume_from=(half_params, half_state))
    np.testing.assert_array_equal(resumed, straight)


def test_clip_grad_norm_scales_to_max_norm():
    a, b = param([3.0]), param([4.0])
    a.grad, b.grad = np.array([3.0]), np.array([4.0])
    norm = optim.clip_grad_norm([a, b], max_norm=1.0)
    assert norm == pytest.approx(5.0)
    assert np.hypot(a.grad[0], b.grad[0]) == pytest.approx(1.0)
    assert optim.clip_grad_norm([a, b], max_norm=10.0) == pytest.approx(1.0)
    assert np.hypot(a.grad[0], b.grad[0]) == pytest.approx(1.0)  # untouched below the limit


def test_optimizer_argument_errors():
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([], lr=0.1)
    with pytest.raises(ValueError, match="learning rate must be positive"):
        optim.Adam([param([1.0])], lr=0)
    with pytest.raises(TypeError, match="requires grad"):
        optim.SGD([mv.tensor([1.0])], lr=0.1)


@pytest.mark.parametrize("kwargs,message", [
    ({"lr": float("nan")}, "learning rate must be positive and finite, got nan"),
    ({"lr": float("inf")}, "learning rate must be positive and finite"),
    ({"lr": 1e-3, "eps": float("nan")}, "eps must be finite"),
    ({"lr": 1e-3, "eps": 0.0}, "eps must be positive"),
    ({"lr": 1e-3, "betas": (0.9, float("nan"))}, "beta2 must be finite"),
    ({"lr": 1e-3, "weight_decay": -0.1}, "weight_decay must be finite and >= 0"),
])
def test_adam_rejects_non_finite_and_out_of_range_settings(kwargs, message):
    with pytest.raises(ValueError, match=message):
        optim.Adam([param([1.0])], **kwargs)


def test_sgd_rejects_nan_settings():
    with pytest.raises(ValueError, match="SGD: learning rate must be positive and finite, got nan"):
        optim.SGD([param([1.0])], lr=float("nan"))
    with pytest.raises(ValueError, match="SGD: momentum must be finite"):
        optim.SGD([param([1.0])], lr=0.1, momentum=float("nan"))


def _optimizers():
    return sorted(mv.optim.Optimizer.__subclasses__(), key=lambda c: c.__name__)


@pytest.mark.parametrize("cls", _optimizers(), ids=lambda c: c.__name__)
def test_every_optimizer_given_the_model_or_a_tensor_names_model_parameters(cls):
    model = mv.nn.Linear(3, 2, rng=mv.random.Generator(0))
    assert len(_optimizers()) >= 2
    for wrong, what in ((model, "the model itself (Linear)"), (model.weight, "one tensor (3, 2)"),
                        (model.named_parameters(), "(name, tensor) pair"), (3, "got int")):
        with pytest.raises(TypeError, match=rf"{cls.__name__}: .*{re.escape(what)}.*model\.parameters\(\)"):
            cls(wrong, lr=0.1)
    kept = cls(model.parameters(), lr=0.1).params
    assert len(kept) == 2 and all(a is b for a, b in zip(kept, model.parameters()))


def _two_layer(seed):
    rng = np.random.default_rng(seed)
    return [mv.tensor(rng.normal(size=s).astype(np.float32), requires_grad=True) for s in ((6, 5), (5,), (5, 3), (3,))]


def _loss(params, x):
    w1, b1, w2, b2 = params
    return (((x @ w1 + b1).relu() @ w2 + b2) ** 2).sum()


@pytest.mark.parametrize("make", [
    lambda ps: optim.SGD(ps, lr=0.01, momentum=0.9, weight_decay=0.01),
    lambda ps: optim.Adam(ps, lr=0.01, weight_decay=0.01),
], ids=["sgd", "adam"])
def test_one_call_per_step_resumes_bit_identically_and_matches_the_reference(make):
    """Four float32 parameters updated together (the CPU provider's foreach loop); the last one
    gets no gradient on the first step, so its state starts a step later. Stopping after two
    steps and resuming from state_dict gives the uninterrupted run's parameters bit for bit,
    and the reference kernels give the same numbers within float32 rounding."""
    x = mv.tensor(np.random.default_rng(1).normal(size=(4, 6)).astype(np.float32))

    def run(steps, kernels="custom", resume_from=None):
        params = _two_layer(0)
        opt = make(params)
        if resume_from is not None:
            for p, saved in zip(params, resume_from[0]):
                p.data[...] = saved
            opt.load_state_dict(resume_from[1])
        with mv.providers.use_kernels(kernels):
            for _ in range(steps):
                opt.zero_grad()
                _loss(params, x).backward()
                if opt.steps == 0:
                    params[3].grad = None  # no gradient this step: no update, no state yet
                opt.step()
        return [p.numpy().copy() for p in params], opt.state_dict()

    straight, state = run(4)
    assert set(state) >= ({"velocity.3"} if "velocity.0" in state else {"m.3", "v.3"})
    half = run(2)
    resumed, _ = run(2, resume_from=half)
    for a, b in zip(resumed, straight):
        np.testing.assert_array_equal(a, b)
    reference, _ = run(4, kernels="reference")
    for a, b in zip(straight, reference):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("optimizer", ["SGD", "Adam"])
def test_a_parameter_listed_twice_or_a_non_leaf_is_refused(optimizer):
    """Found in QA: Adam(list(enc.parameters()) + list(vae.parameters())) with enc inside vae took
    enc's parameters twice (two updates per step), and a computed tensor (w * 2, whose .grad is never
    kept) was accepted and never moved."""
    rng = mv.random.Generator(0)
    enc = mv.nn.Linear(2, 2, rng=rng)
    both = mv.nn.Sequential(enc, mv.nn.Linear(2, 1, rng=rng))
    make = getattr(mv.optim, optimizer)
    with pytest.raises(ValueError, match=rf"^{optimizer}: parameter 2 \(0\.weight\) is listed twice \(also "
                                         r"parameter 0\); pass each once"):
        make(list(enc.parameters()) + list(both.parameters()), lr=0.1)
    with pytest.raises(TypeError, match=rf"^{optimizer}: parameter 0 .*the output of 'mul'.*not a leaf"):
        make([enc.weight * 2.0], lr=0.1)
    make(both.parameters(), lr=0.1)  # each once: fine


@pytest.mark.parametrize("kernels", ["custom", "reference"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("make", [
    lambda ps: optim.Adam(ps, lr=1e-3),
    lambda ps: optim.SGD(ps, lr=1e-3, momentum=0.9),
], ids=["adam", "sgd-momentum"])
def test_a_state_that_decays_on_zero_gradients_reaches_zero_instead_of_sticking_on_a_subnormal(make, dtype, kernels):
    """Found timing the demo: a dead ReLU unit's weights get g = 0 for ever; their moments decay by
    0.9 / 0.999 a step and (IEEE rounding) stop on a subnormal fixed point: 0.9 x the smallest
    subnormal rounds back to it. Every x86 operation on one costs ~100 cycles (the demo's step
    took 2x as long after 1000 steps). Below the smallest normal number a state is flushed to 0:
    in every provider, and the parameters move exactly as without the flush."""
    tiny = np.finfo(dtype).tiny
    start = np.array([0.5, -0.25, 1e-3, 3.0], dtype=dtype)
    p = mv.tensor(start.copy(), requires_grad=True, dtype=dtype)
    opt = make([p])
    with mv.providers.use_kernels(kernels):
        p.grad = np.array([1e-3, -2e-3, 1.0, 0.5], dtype=dtype)
        opt.step()
        moved = p.numpy().copy()
        steps = 3000 if dtype == "float32" else 12000  # enough for 0.9^n to pass every subnormal
        for _ in range(steps):
            p.grad = np.zeros(4, dtype=dtype)  # a dead unit: no gradient any more
            opt.step()
    states = [a for a in (getattr(opt, "m", None), getattr(opt, "v", None), getattr(opt, "velocities", None),
                          getattr(opt, "velocity", None)) if a is not None]
    arrays = [np.asarray(s[0]) for s in states if s and s[0] is not None]
    assert arrays, "the optimizer kept no state to check"
    for state in arrays:
        subnormal = (state != 0) & (np.abs(state) < tiny)
        assert not subnormal.any(), f"subnormal states left: {state[subnormal]}"
    assert np.all(np.isfinite(p.numpy()))
    # The flush moves no parameter: after the first step, a zero-gradient Adam step is below
    # float resolution once m is tiny; SGD's velocity keeps moving p until it decays.
    assert not np.array_equal(moved, start)


@pytest.mark.parametrize("kernels", ["custom", "reference"])
def test_the_flush_agrees_between_providers_on_the_first_step_and_in_sign(kernels):
    """Found in QA: the reference provider kept a subnormal velocity on SGD's first step and stored -0.0."""
    tiny = np.finfo(np.float32).tiny
    p = mv.tensor(np.array([1.0, 1.0, 1.0, 1.0, 1.0], dtype=np.float32), requires_grad=True)
    sgd = optim.SGD([p], lr=0.1, momentum=0.9)
    with mv.providers.use_kernels(kernels):
        p.grad = np.array([tiny / 4, -tiny / 4, 1.0, np.nan, -np.inf], dtype=np.float32)
        sgd.step()
    v = sgd.velocity[0]
    assert v[0] == 0 and v[1] == 0 and not np.signbit(v[:2]).any() and v[2] == 1.0
    assert np.isnan(v[3]) and v[4] == -np.inf  # NaN and inf are never flushed
