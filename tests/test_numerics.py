"""NumPy's floating-point reports inside an op name the op and the caller's line (minivae/numerics.py)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import minivae as mv

HERE = __file__.rsplit("/", 1)[-1]


def test_an_overflow_in_a_forward_names_the_op_and_this_line():
    x = mv.tensor([1000.0, 1.0], requires_grad=True)
    with pytest.warns(mv.NumericWarning, match=rf"overflow encountered in minivae's forward of 'exp' \(called from {HERE}:\d+\)") as seen:
        mv.exp(x)
    assert seen[0].filename == __file__  # attributed to this file, not to providers/reference.py
    assert "detect_anomaly" in str(seen[0].message) and "simplefilter('error', mv.NumericWarning)" in str(seen[0].message)


def test_a_divide_by_zero_in_a_backward_says_backward():
    x = mv.tensor([0.0, 1.0], requires_grad=True)
    y = mv.log(x).sum()  # log(0) = -inf on purpose (quiet); its gradient 1/0 is the report
    with pytest.warns(mv.NumericWarning, match=r"divide by zero encountered in minivae's backward of 'log'") as seen:
        y.backward()
    assert seen[0].filename == __file__


def test_one_line_turns_them_into_errors_naming_the_op_and_anomaly_mode_raises_too():
    with warnings.catch_warnings():
        warnings.simplefilter("error", mv.NumericWarning)
        with pytest.raises(mv.NumericWarning, match="forward of 'exp'"):
            mv.exp(mv.tensor([1000.0]))
    with mv.detect_anomaly(), pytest.raises(mv.AnomalyError, match="overflow encountered in forward of 'exp'"):
        mv.exp(mv.tensor([1000.0]))


def test_plain_numpy_outside_minivae_still_warns_as_numpy_and_chosen_modes_are_kept():
    with pytest.warns(RuntimeWarning, match="overflow encountered") as seen:
        np.exp(np.array([1000.0]))
    assert not isinstance(seen[0].message, mv.NumericWarning) and seen[0].filename == __file__
    with np.errstate(over="ignore"), warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isinf(mv.exp(mv.tensor([1000.0])).data[0])  # the user's own errstate wins: silence


@pytest.mark.parametrize("op, value", [("log", -1.0), ("log1p", -2.0)])
def test_a_log_of_a_negative_number_warns_while_log_of_zero_stays_quiet(op, value):
    """Found in QA: mv.log(-1) was a silent NaN (the op quieted 'invalid' with 'divide'); log(0) = -inf
    is the honest answer and stays quiet (its gradient 1/0 is reported in backward)."""
    with pytest.warns(mv.NumericWarning, match=rf"invalid value encountered in minivae's forward of '{op}' "
                                               rf"\(called from {HERE}:\d+\)"):
        y = getattr(mv, op)(mv.tensor([value, 1.0]))
    assert np.isnan(y.numpy()[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert getattr(mv, op)(mv.tensor([-1.0 if op == "log1p" else 0.0])).numpy()[0] == -np.inf


@pytest.mark.parametrize("exponent", [0.5, mv.tensor(0.5), mv.tensor([0.5, 0.5])], ids=["number", "0-d tensor", "tensor"])
def test_a_negative_base_with_a_fractional_exponent_warns_whatever_the_exponent_is(exponent):
    """Found in QA: x ** 0.5 warned but x ** tensor(0.5) was a silent NaN (the forward was quiet)."""
    x = mv.tensor([-4.0, 4.0], requires_grad=True)
    with pytest.warns(mv.NumericWarning, match=rf"invalid value encountered in minivae's forward of '\w+' \(called from {HERE}:\d+\)"):
        y = x ** exponent
    assert np.isnan(y.numpy()[0]) and y.numpy()[1] == 2.0
    with warnings.catch_warnings():  # a well-defined power stays quiet, forward and backward (both branches of `where`)
        warnings.simplefilter("error")
        z = mv.tensor([0.0, 2.0], requires_grad=True) ** mv.tensor([2.0, 3.0], requires_grad=True)
        z.sum().backward()
        assert z.tolist() == [0.0, 8.0]
