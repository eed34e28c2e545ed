"""The exercise checks of section 1.1 (``dlbook.exercises.neuron``): see exercise_harness."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from exercise_harness import Args, Case, case_params, run_case

from dlbook.exercises import neuron as ex


def _grad(x, y, w, b):  # the book's solution
    return (torch.sigmoid(x @ w + b) - y) * x


def _grad_float64_written_out(x, y, w, b):  # right: another formula, in float64
    z = float(x.double() @ w.double() + float(b))
    return x.double() * (1 / (1 + np.exp(-z)) - float(y))


def _grad_numpy(x, y, w, b):  # right: returns a NumPy array
    xn, wn = x.numpy(), w.numpy()
    p = 1 / (1 + np.exp(-(xn @ wn + b.item())))
    return -(y.item() - p) * xn


def _grad_by_autograd(x, y, w, b):  # right, though not what the exercise asks for
    w = w.clone().requires_grad_()
    z = x @ w + b
    loss = -(y * torch.nn.functional.logsigmoid(z) + (1 - y) * torch.nn.functional.logsigmoid(-z))
    loss.backward()
    return w.grad


def _grad_forgot_x(x, y, w, b):  # ∂ℓ/∂z, not ∂ℓ/∂w
    return torch.sigmoid(x @ w + b) - y


def _grad_wrong_sign(x, y, w, b):  # the update direction, not the gradient
    return (y - torch.sigmoid(x @ w + b)) * x


def _grad_of_squared_error(x, y, w, b):  # the gradient of (σ(z) − y)²/2
    s = torch.sigmoid(x @ w + b)
    return (s - y) * s * (1 - s) * x


def _grad_step(x, y, w, b):  # the perceptron's error instead of the sigmoid's
    return ((x @ w + b >= 0).float() - y) * x


def _grad_in_place(x, y, w, b):  # right numbers, but it overwrites x
    return x.mul_(torch.sigmoid(x @ w + b) - y)


def _grad_no_return(x, y, w, b):
    g = (torch.sigmoid(x @ w + b) - y) * x  # noqa: F841 - forgot to return


OR_NAND = (torch.tensor([[1.0, 1.0], [-1.0, -1.0]]), torch.tensor([-0.5, 1.5]),
           torch.tensor([1.0, 1.0]), -1.5)

CASES = [
    Case(ex.nand, solution=Args((torch.tensor([-1.0, -1.0]), 1.5)),
         right=[Args(([-1, -1], 1)),                          # b = 1: the tie gives step(0) = 1
                Args((np.array([-2.0, -2.0]), torch.tensor(3.5))),
                Args((torch.tensor([[-1.0, -1.0]]), torch.tensor([1.999])))],
         wrong=[Args((torch.tensor([1.0, 1.0]), -1.5)),       # AND
                Args((torch.tensor([-1.0, -1.0]), 2.0)),      # b = 2: (1, 1) sits on the tie
                Args((torch.tensor([-1.0, -1.0]), 0.5)),      # NOR
                Args((torch.tensor([-1.0, -1.0, -1.0]), 1.5)),
                Args(("w", 1.5))],
         unanswered=[Args((..., ...)), Args((torch.tensor([-1.0, -1.0]), ...))]),
    Case(ex.distance, solution=(3 * 1 + 4 * -2 - 5) / (3**2 + 4**2) ** 0.5,
         right=[-2, torch.tensor(-2.0), np.float32(-2.0), -2.0004],
         wrong=[2.0,             # the unsigned distance
                -10.0,           # w·x + b, not divided by ‖w‖
                -0.4,            # divided by ‖w‖² instead of ‖w‖
                -1.0,            # forgot the bias
                10**400]),
    Case(ex.loss_grad_w, solution=_grad, takes_function=True,
         right=[_grad_float64_written_out, _grad_numpy, _grad_by_autograd],
         wrong=[_grad_forgot_x, _grad_wrong_sign, _grad_of_squared_error, _grad_step,
                _grad_in_place, _grad_no_return]),
    Case(ex.xor_network, solution=Args(OR_NAND),
         right=[Args(([[-1, -1], [1, 1]], [1.5, -0.5], [1, 1], -1.5)),   # NAND first
                Args((2 * OR_NAND[0], 2 * OR_NAND[1], torch.tensor([[3.0, 3.0]]),
                      torch.tensor([-4.0]))),                           # scaled, (1, 2) and (1,)
                Args((OR_NAND[0].numpy(), OR_NAND[1].numpy(), [1.0, 1.0], -2.0))],  # a tie
         wrong=[Args((torch.tensor([[1.0, 1.0], [1.0, 1.0]]), torch.tensor([-0.5, -1.5]),
                      torch.tensor([1.0, -1.0]), -0.5)),      # the section's OR/AND network
                Args((OR_NAND[0], OR_NAND[1], torch.tensor([1.0, 1.0]), -0.5)),  # output OR
                Args((OR_NAND[0].T, OR_NAND[1], OR_NAND[2], OR_NAND[3])),        # W1 transposed
                Args((OR_NAND[0][0], OR_NAND[1], OR_NAND[2], OR_NAND[3])),       # shape (2,)
                Args((OR_NAND[0], OR_NAND[1], OR_NAND[2], torch.tensor([-1.5, 0.0])))],
         unanswered=[Args((..., ..., ..., ...)), Args((OR_NAND[0], OR_NAND[1], ..., ...))]),
]


@pytest.mark.parametrize("check, status, answer", case_params(CASES))
def test_exercise_check(check, status, answer, capsys):
    run_case(check, status, answer, capsys)


def test_hints_say_what_is_wrong(capsys):
    """The messages point at the mistake without giving the answer away."""
    ex.distance(2.0)
    assert "signed" in capsys.readouterr().out
    ex.xor_network(torch.tensor([[1.0, 1.0], [1.0, 1.0]]), torch.tensor([-0.5, -1.5]),
                   torch.tensor([1.0, -1.0]), -0.5)
    assert "compute OR and AND" in capsys.readouterr().out
    ex.nand(torch.tensor([1.0, 1.0]), -1.5)
    assert "computes AND, not NAND" in capsys.readouterr().out
    ex.distance(0.0)
    assert "-2" not in capsys.readouterr().out


def test_checks_accept_gpu_style_answers_moved_to_the_cpu(capsys):
    """check.condition moves tensors to the CPU; a requires_grad tensor is fine too."""
    w = torch.tensor([-1.0, -1.0], requires_grad=True)
    assert ex.nand(w, torch.tensor(1.5, requires_grad=True))
