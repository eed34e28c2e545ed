"""A reusable training loop for classifiers: :func:`fit`, :func:`evaluate` and :class:`History`.

The loop is the one every section from here on uses, written out once so that it can be read:

    for each epoch:
        model.train()
        for each batch (x, y):
            zero the gradients; loss = loss_fn(model(x), y); loss.backward(); optimizer.step()
        model.eval(); with no gradients, measure loss and accuracy on the validation set

``fit`` returns a :class:`History` of per-epoch metrics that can plot its learning curves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar, Iterable

import torch
import torch.nn.functional as F
from torch import nn

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class History:
    """Per-epoch metrics of one training run (validation lists are empty without validation)."""

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)

    _METRICS: ClassVar[tuple[str, ...]] = ("train_loss", "train_acc", "val_loss", "val_acc")

    def __len__(self) -> int:
        return len(self.train_loss)

    def best_epoch(self, metric: str = "val_loss") -> int:
        """The 0-based epoch with the lowest loss or highest accuracy of ``metric``."""
        if metric not in self._METRICS:
            raise ValueError(f"metric must be one of {self._METRICS}, got {metric!r}")
        values = getattr(self, metric)
        if not values:
            raise ValueError(f"no {metric} recorded; pass val_loader to fit() to record "
                             "validation metrics")
        best = max if metric.endswith("acc") else min
        return best(range(len(values)), key=values.__getitem__)

    def plot(self, axes=None, title: str | None = None):
        """Learning curves: loss (left) and accuracy (right), train vs validation, per epoch.

        ``axes`` is a pair of matplotlib axes; by default a new 1x2 figure is made. Returns
        the axes.
        """
        import matplotlib.pyplot as plt

        if axes is None:
            _, axes = plt.subplots(1, 2, figsize=(6, 2.6), layout="constrained")
        if len(axes) != 2:
            raise ValueError(f"expected a pair of axes (loss, accuracy), got {len(axes)}")
        epochs = range(1, len(self) + 1)
        for ax, name in zip(axes, ("loss", "acc")):
            ax.plot(epochs, getattr(self, f"train_{name}"), label="train")
            if getattr(self, f"val_{name}"):
                ax.plot(epochs, getattr(self, f"val_{name}"), label="validation")
            ax.set_xlabel("epoch")
            ax.set_ylabel("loss" if name == "loss" else "accuracy")
        axes[1].legend()
        if title:
            axes[0].figure.suptitle(title)
        return axes


def _model_device(model: nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def _batch_stats(logits: torch.Tensor, y: torch.Tensor, loss: torch.Tensor) -> tuple[float, int]:
    """Sum of the loss and number of right predictions in a batch (loss_fn takes the mean)."""
    return loss.item() * len(y), (logits.argmax(dim=-1) == y).sum().item()


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, loss_fn: LossFn = F.cross_entropy,
             device: torch.device | str | None = None) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` over every example in ``loader`` (eval mode).

    The mean is over examples, not batches, so a smaller last batch counts by its size.
    The model's train/eval mode is restored afterwards.
    """
    device = torch.device(device) if device is not None else _model_device(model)
    was_training = model.training
    model.eval()
    total_loss, correct, n = 0.0, 0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = model(x)
        batch_loss, batch_correct = _batch_stats(logits, y, loss_fn(logits, y))
        total_loss, correct, n = total_loss + batch_loss, correct + batch_correct, n + len(y)
    model.train(was_training)
    if n == 0:
        raise ValueError("loader yielded no examples; check the dataset and batch size")
    return total_loss / n, correct / n


def fit(model: nn.Module, train_loader: Iterable, optimizer: torch.optim.Optimizer, *,
        epochs: int, loss_fn: LossFn = F.cross_entropy, val_loader: Iterable | None = None,
        device: torch.device | str | None = None, progress: bool = True,
        desc: str = "training") -> History:
    """Train ``model`` for ``epochs`` passes over ``train_loader`` and return its History.

    Train loss and accuracy are averaged over each epoch's examples as the model changes
    (the usual running measure); validation metrics are measured after each epoch with
    :func:`evaluate`. Model and batches move to ``device`` (default: where the model is).
    """
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ValueError("optimizer must be a torch.optim.Optimizer, e.g. "
                         f"torch.optim.Adam(model.parameters()), got {type(optimizer).__name__}")
    from tqdm.auto import tqdm

    device = torch.device(device) if device is not None else _model_device(model)
    model.to(device)
    history = History()
    bar = tqdm(range(epochs), desc=desc, disable=not progress)
    for _ in bar:
        model.train()
        total_loss, correct, n = 0.0, 0, 0
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            optimizer.zero_grad()
            logits = model(x)
            loss = loss_fn(logits, y)
            loss.backward()
            optimizer.step()
            batch_loss, batch_correct = _batch_stats(logits.detach(), y, loss.detach())
            total_loss, correct, n = total_loss + batch_loss, correct + batch_correct, n + len(y)
        if n == 0:
            raise ValueError("train_loader yielded no examples; check the dataset, the batch "
                             "size and drop_last")
        history.train_loss.append(total_loss / n)
        history.train_acc.append(correct / n)
        if val_loader is not None:
            val_loss, val_acc = evaluate(model, val_loader, loss_fn, device)
            history.val_loss.append(val_loss)
            history.val_acc.append(val_acc)
            bar.set_postfix(train_loss=f"{total_loss / n:.3f}", val_loss=f"{val_loss:.3f}")
        else:
            bar.set_postfix(train_loss=f"{total_loss / n:.3f}")
    return history
