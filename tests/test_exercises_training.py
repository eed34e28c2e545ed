"""The exercise checks of section 2.3 (``dlbook.exercises.training``): see exercise_harness."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from exercise_harness import Case, case_params, run_case
from torch.utils.data import DataLoader

from dlbook.exercises import training as ex

# --- batches_per_epoch -----------------------------------------------------------------------


def _batches(n, batch_size, drop_last):  # the book's solution
    return n // batch_size if drop_last else -(-n // batch_size)


def _batches_ceil(n, batch_size, drop_last):  # right: math.ceil, returned as a float
    return float(n // batch_size) if drop_last else float(math.ceil(n / batch_size))


def _batches_remainder(n, batch_size, drop_last):  # right: count full batches, add the rest
    full, rest = divmod(n, batch_size)
    return full + (0 if drop_last or rest == 0 else 1)


def _batches_by_dataloader(n, batch_size, drop_last):  # right (the exercise asks otherwise)
    return len(DataLoader(range(n), batch_size=batch_size, drop_last=drop_last))


def _batches_always_floor(n, batch_size, drop_last):  # forgets the partial batch
    return n // batch_size


def _batches_always_ceil(n, batch_size, drop_last):  # ignores drop_last
    return math.ceil(n / batch_size)


def _batches_plus_one(n, batch_size, drop_last):  # one too many when batch_size divides n
    return n // batch_size if drop_last else n // batch_size + 1


def _batches_ratio(n, batch_size, drop_last):  # a fraction of batches
    return n / batch_size


def _batches_round(n, batch_size, drop_last):  # rounds to the nearest
    return round(n / batch_size)


def _batches_no_return(n, batch_size, drop_last):
    steps = n // batch_size  # noqa: F841 - forgot to return


# --- accuracy --------------------------------------------------------------------------------


def _acc(logits, y):  # the book's solution
    return (logits.argmax(dim=-1) == y).float().mean()


def _acc_count_over_n(logits, y):  # right: a count divided by n, as a Python float
    return (logits.argmax(1) == y).sum().item() / len(y)


def _acc_numpy(logits, y):  # right: in NumPy
    return np.mean(logits.numpy().argmax(axis=1) == y.numpy())


def _acc_softmax(logits, y):  # right: a softmax first changes nothing
    return torch.mean((logits.softmax(-1).max(dim=-1).indices == y).double())


def _acc_count(logits, y):  # a count, not a fraction
    return (logits.argmax(dim=-1) == y).sum()


def _acc_percent(logits, y):  # a percentage
    return 100 * (logits.argmax(dim=-1) == y).float().mean()


def _acc_argmin(logits, y):
    return (logits.argmin(dim=-1) == y).float().mean()


def _acc_wrong_dim(logits, y):  # arg-max over the examples, not over the classes
    return (logits.argmax(dim=0) == y).float().mean()


def _acc_bool_mean(logits, y):  # the mean of a bool tensor raises
    return (logits.argmax(dim=-1) == y).mean()


def _acc_max_value(logits, y):  # compares the largest logit, not its index
    return (logits.max(dim=-1).values == y).float().mean()


CASES = [
    Case(ex.mlp_parameters, solution=(64 * 128 + 128) + (128 * 64 + 64) + (64 * 10 + 10),
         right=[17226.0, torch.tensor(17226), np.int64(17226), torch.tensor([17226])],
         wrong=[17024, 17216, 16576, 17280, 17226.4, "17226", 10**400]),
    Case(ex.batches_per_epoch, solution=_batches, takes_function=True,
         right=[_batches_ceil, _batches_remainder, _batches_by_dataloader],
         wrong=[_batches_always_floor, _batches_always_ceil, _batches_plus_one, _batches_ratio,
                _batches_round, _batches_no_return]),
    Case(ex.accuracy, solution=_acc, takes_function=True,
         right=[_acc_count_over_n, _acc_numpy, _acc_softmax],
         wrong=[_acc_count, _acc_percent, _acc_argmin, _acc_wrong_dim, _acc_bool_mean,
                _acc_max_value]),
    Case(ex.choose_weight_decay, solution="validation set",
         right=["validation", "Validation set", "the validation set.", "val", "Validation data",
                "dev set"],
         wrong=["test set", "training set", "Test", "train", "validation and test", 1],
         unanswered=[..., None]),
]


@pytest.mark.parametrize("check, status, answer", case_params(CASES))
def test_exercise_check(check, status, answer, capsys):
    run_case(check, status, answer, capsys)


def test_the_reference_counts_agree_with_pytorch():
    from dlbook.activations import mlp

    model = mlp([64, 128, 64, 10], torch.nn.ReLU)
    assert ex._N_PARAMETERS == sum(p.numel() for p in model.parameters())
    for n, b, drop in [(1078, 64, False), (1078, 64, True), (10, 32, False), (64, 64, False),
                       (129, 64, True)]:
        assert ex._batches_per_epoch(n, b, drop) == len(DataLoader(range(n), batch_size=b,
                                                                   drop_last=drop))


def test_a_slip_gets_its_own_hint(capsys):
    ex.mlp_parameters(17024)
    assert "biases" in capsys.readouterr().out
    ex.mlp_parameters(16576)
    assert "three nn.Linear" in capsys.readouterr().out
