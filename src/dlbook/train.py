"""The training loop every section reuses: :func:`fit`, :func:`evaluate` and :class:`History`.

The loop is written out once so that it can be read (Section 2.3 shows it):

    for each epoch:
        model.train()
        for each batch (x, y):
            zero the gradients; loss = loss_fn(model(x), y); loss.backward()
            [clip the gradients' global norm]; optimizer.step(); [step the lr schedule]
        model.eval(); without gradients, measure the loss (and accuracy) on the validation set
        [stop when the validation measure has not improved for `patience` epochs]

The parts in brackets are optional arguments of :func:`fit`. It returns a :class:`History`:
per-epoch losses and accuracies, and per-step losses and learning rates.

*Accuracy* is recorded for classification only: when the targets are class indices (an integer
tensor) and the model gives one score per class along its last dimension, such as logits of
shape (B, K) for labels (B,), or (B, T, V) for next-token targets (B, T). It is the fraction of
all ``y.numel()`` targets whose highest score is the right class. A regression (float targets)
records no accuracy: its accuracy lists stay empty and :func:`evaluate` returns ``None``.

Losses are averaged over all target entries (``y.numel()`` per batch), which is what a loss with
the default ``reduction="mean"`` averages over, so a smaller last batch counts by its size.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from dlbook.optim import EarlyStopping
from dlbook.utils import progress as progress_bar

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class History:
    """What one training run recorded.

    Per epoch: ``train_loss`` and ``train_acc`` (averaged over the epoch's batches while the
    model changes), ``val_loss`` and ``val_acc`` (measured after the epoch; empty without a
    validation loader). The accuracy lists stay empty when no accuracy is computed (regression).
    Per optimizer step: ``step_loss`` (the batch's loss), ``step_lr`` (the learning rate of the
    step, first parameter group) and, with gradient clipping, ``grad_norm`` (the global norm
    before clipping). With early stopping: ``stopped_epoch``, the 0-based epoch after which
    training stopped (None if it ran all epochs), and ``restored_epoch``, the best epoch, whose
    weights were put back into the model (None without early stopping).
    """

    train_loss: list[float] = field(default_factory=list)
    train_acc: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_acc: list[float] = field(default_factory=list)
    step_loss: list[float] = field(default_factory=list)
    step_lr: list[float] = field(default_factory=list)
    grad_norm: list[float] = field(default_factory=list)
    stopped_epoch: int | None = None
    restored_epoch: int | None = None

    _METRICS: ClassVar[tuple[str, ...]] = ("train_loss", "train_acc", "val_loss", "val_acc")

    def __len__(self) -> int:
        """The number of epochs run."""
        return len(self.train_loss)

    def best_epoch(self, metric: str = "val_loss") -> int:
        """The 0-based epoch with the lowest loss or highest accuracy of ``metric``.

        Epochs whose value is NaN (a diverged run) are skipped; the first of equal values wins.
        """
        values = self._values(metric)
        finite = [i for i, v in enumerate(values) if not math.isnan(v)]
        if not finite:
            raise ValueError(f"every {metric} is NaN: the run diverged; try a smaller learning "
                             "rate or clip the gradients with fit(..., max_grad_norm=1.0)")
        best = max if metric.endswith("acc") else min
        return best(finite, key=values.__getitem__)

    def _values(self, metric: str) -> list[float]:
        if metric not in self._METRICS:
            raise ValueError(f"metric must be one of {self._METRICS}, got {metric!r}")
        values = getattr(self, metric)
        if not values:
            if metric.startswith("val") and not self.val_loss:
                raise ValueError(f"no {metric} recorded; pass val_loader to fit() to record "
                                 "validation metrics")
            raise ValueError(f"no {metric} recorded: accuracy is only computed for "
                             "classification (integer class targets); use a loss metric")
        return values

    def plot(self, axes=None, title: str | None = None):
        """Learning curves per epoch, train vs validation: loss, and accuracy if recorded.

        ``axes`` is a pair of matplotlib axes (loss, accuracy), or one axis for a run without
        accuracy; by default a new figure is made. Returns the axes.
        """
        import matplotlib.pyplot as plt

        names = ("loss", "acc") if self.train_acc else ("loss",)
        if axes is None:
            _, axes = plt.subplots(1, len(names), figsize=(3 * len(names), 2.6),
                                   layout="constrained", squeeze=False)
            axes = axes[0]
        if not hasattr(axes, "__len__"):
            axes = [axes]
        if len(axes) != len(names):
            want = "a pair of axes (loss, accuracy)" if len(names) == 2 else "one axis (loss)"
            raise ValueError(f"expected {want}, got {len(axes)}")
        epochs = range(1, len(self) + 1)
        for ax, name in zip(axes, names):
            ax.plot(epochs, getattr(self, f"train_{name}"), label="train")
            if getattr(self, f"val_{name}"):
                ax.plot(epochs, getattr(self, f"val_{name}"), label="validation")
            ax.set_xlabel("epoch")
            ax.set_ylabel("loss" if name == "loss" else "accuracy")
        axes[-1].legend()
        if title:
            axes[0].figure.suptitle(title)
        return axes


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable, loss_fn: LossFn = F.cross_entropy,
             device: torch.device | str | None = None,
             accuracy: bool | None = None) -> tuple[float, float | None]:
    """Mean loss and accuracy of ``model`` over every example in ``loader`` (eval mode).

    The accuracy is ``None`` where none is computed (see the module's docstring; ``accuracy``
    True or False forces it on or off). The model's train/eval mode is restored afterwards.
    """
    _check_evaluate(model, loader, loss_fn, accuracy)
    device = _device(model, device)
    loss_fn = _checked_loss(loss_fn)
    was_training = model.training
    model.eval()
    running = _Running(accuracy)
    for x, y in _batches(loader, device, model):
        out = model(x)
        running.add(out, y, loss_fn(out, y).item())
    model.train(was_training)
    return running.result("loader")


def fit(model: nn.Module, train_loader: Iterable, optimizer: torch.optim.Optimizer, *,
        epochs: int, loss_fn: LossFn = F.cross_entropy, val_loader: Iterable | None = None,
        device: torch.device | str | None = None, progress: bool = True,
        desc: str = "training", accuracy: bool | None = None,
        scheduler: Any = None, scheduler_interval: str = "step",
        max_grad_norm: float | None = None,
        early_stopping: int | EarlyStopping | None = None,
        monitor: str = "val_loss") -> History:
    """Train ``model`` for ``epochs`` passes over ``train_loader`` and return its History.

    ``scheduler``: a ``torch.optim.lr_scheduler`` of ``optimizer``, stepped after every
    optimizer step (``scheduler_interval="step"``, so ``T_max`` counts steps) or after every
    epoch (``"epoch"``; ``ReduceLROnPlateau`` is then given the validation loss, or the training
    loss without validation). ``max_grad_norm``: rescale the gradients so that their global L2
    norm is at most this before each step (``torch.nn.utils.clip_grad_norm_``).
    ``early_stopping``: a patience in epochs, or a fresh ``dlbook.optim.EarlyStopping``; stops
    when ``monitor`` (``"val_loss"`` or ``"val_acc"``) has not improved for that many epochs
    and puts the weights of the best epoch back into the model. Model and batches move to
    ``device`` (default: where the model is).
    """
    _check_fit(model, optimizer, epochs, loss_fn, val_loader, accuracy, scheduler,
               scheduler_interval, max_grad_norm, early_stopping, monitor)

    device = _device(model, device)
    model.to(device)
    loss_fn = _checked_loss(loss_fn)  # clear errors for mismatched dtypes and shapes
    stopper = _stopper(early_stopping)  # None, or a dlbook.optim.EarlyStopping
    history = History()
    bar = progress_bar(range(epochs), desc=desc, disable=not progress)
    for epoch in bar:
        model.train()
        running = _Running(accuracy)
        for x, y in _batches(train_loader, device, model):  # on device, dtypes checked
            optimizer.zero_grad()
            out = model(x)
            loss = loss_fn(out, y)
            loss.backward()
            if max_grad_norm is not None:
                norm = nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
                history.grad_norm.append(norm.item())
            optimizer.step()
            history.step_loss.append(loss.item())
            history.step_lr.append(optimizer.param_groups[0]["lr"])
            if scheduler is not None and scheduler_interval == "step":
                scheduler.step()
            running.add(out.detach(), y, history.step_loss[-1])
        _record(history, "train", *running.result("train_loader"))
        if val_loader is not None:
            _record(history, "val", *evaluate(model, val_loader, loss_fn, device, accuracy))
        if scheduler is not None and scheduler_interval == "epoch":
            _step_per_epoch(scheduler, history)
        bar.set_postfix(loss=f"{history.train_loss[-1]:.3f}")
        if stopper is not None and stopper.step(_monitored(history, monitor), model):
            history.stopped_epoch = epoch
            break
    bar.close()  # also when stopped early: the bar's last line is what the notebook keeps
    if stopper is not None and stopper.best_state is not None:
        model.load_state_dict(stopper.best_state)
        history.restored_epoch = stopper.best_epoch
    return history


# --- the pieces the loop calls ---------------------------------------------------------------

class _Running:
    """Sums of the loss and of right predictions over the batches of one pass."""

    def __init__(self, accuracy: bool | None) -> None:
        self.accuracy = accuracy
        self.loss_sum, self.n, self.correct, self.n_scored = 0.0, 0, 0, 0

    def add(self, out: torch.Tensor, y: torch.Tensor, loss: float) -> None:
        n = y.numel()  # a loss with reduction="mean" averages over every target entry
        self.loss_sum, self.n = self.loss_sum + loss * n, self.n + n
        if _scores_classes(out, y, self.accuracy):
            self.correct += (out.argmax(dim=-1) == y).sum().item()
            self.n_scored += n

    def result(self, source: str) -> tuple[float, float | None]:
        if self.n == 0:
            raise ValueError(f"{source} yielded no examples; check the dataset, the batch size "
                             "and drop_last")
        return self.loss_sum / self.n, (self.correct / self.n_scored if self.n_scored else None)


def _scores_classes(out: torch.Tensor, y: torch.Tensor, accuracy: bool | None) -> bool:
    """Whether accuracy applies: integer class targets, one score per class in out's last dim."""
    if accuracy is False:
        return False
    integer_targets = not (y.is_floating_point() or y.is_complex() or y.dtype == torch.bool)
    applies = (integer_targets and isinstance(out, torch.Tensor) and out.ndim == y.ndim + 1
               and tuple(out.shape[:-1]) == tuple(y.shape))
    if accuracy and not applies:
        raise ValueError(f"accuracy=True needs integer class targets y and scores with one more "
                         f"(last) dimension, e.g. out (B, K) for y (B,); got out "
                         f"{tuple(getattr(out, 'shape', ()))} for y {tuple(y.shape)} {y.dtype}")
    return applies


def _record(history: History, split: str, loss: float, acc: float | None) -> None:
    getattr(history, f"{split}_loss").append(loss)
    if acc is not None:
        getattr(history, f"{split}_acc").append(acc)


def _monitored(history: History, monitor: str) -> float:
    """The number early stopping minimises: the validation loss, or minus the accuracy."""
    if monitor == "val_acc" and not history.val_acc:
        raise ValueError("monitor='val_acc' but no accuracy is computed for these targets "
                         "(regression?); use monitor='val_loss'")
    return history.val_loss[-1] if monitor == "val_loss" else -history.val_acc[-1]


def _step_per_epoch(scheduler: Any, history: History) -> None:
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step((history.val_loss or history.train_loss)[-1])
    else:
        scheduler.step()


def _stopper(early_stopping: int | EarlyStopping | None) -> EarlyStopping | None:
    if isinstance(early_stopping, numbers.Integral):
        return EarlyStopping(patience=int(early_stopping))
    return early_stopping


def _device(model: nn.Module, device: torch.device | str | None) -> torch.device:
    if device is not None:
        return torch.device(device)
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


# --- input checks (kept out of the loop so that it reads like the algorithm) -------------------

def _batches(loader: Iterable, device: torch.device,
             model: nn.Module) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The loader's (x, y) batches on ``device``, each checked against the model's dtype."""
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), None)
    first = _first_layer(model)
    for batch in loader:
        if not (isinstance(batch, (tuple, list)) and len(batch) == 2
                and all(isinstance(t, torch.Tensor) for t in batch)):
            raise ValueError("each batch must be a pair of tensors (x, y), as a DataLoader over "
                             f"TensorDataset(X, y) gives; got {type(batch).__name__}")
        x, y = batch[0].to(device), batch[1].to(device)
        _check_x(x, dtype, first)
        yield x, y


def _first_layer(model: nn.Module) -> nn.Module | None:
    """The first submodule that holds parameters directly (None if the model holds its own)."""
    for module in model.modules():
        if any(True for _ in module.parameters(recurse=False)):
            return None if module is model and len(list(model.children())) else module
    return None


_FLOAT_INPUT = (nn.Linear, nn.Bilinear, nn.modules.conv._ConvNd, nn.RNNBase,
                nn.modules.batchnorm._BatchNorm, nn.LayerNorm)


def _check_x(x: torch.Tensor, dtype: torch.dtype | None, first: nn.Module | None) -> None:
    if dtype is None or torch.is_autocast_enabled(x.device.type):
        return
    if x.is_floating_point() and x.dtype != dtype:
        raise ValueError(f"the batch x is {x.dtype} but the model's parameters are {dtype}: "
                         f"convert one to the other, e.g. model.to({x.dtype}) or "
                         f"X.to({dtype}) before making the dataset")
    if not x.is_floating_point() and isinstance(first, _FLOAT_INPUT):
        raise ValueError(f"the batch x is {x.dtype}, but the model's first layer "
                         f"({type(first).__name__}) needs floating-point input: convert the "
                         f"data with X.to({dtype})")


def _checked_loss(loss_fn: LossFn) -> LossFn:
    """``loss_fn`` behind checks that turn silent broadcasting and raw dtype errors into a
    ValueError that says what to change."""
    if getattr(loss_fn, "_dlbook_checked", False):
        return loss_fn
    cross_entropy = loss_fn is F.cross_entropy or isinstance(loss_fn, nn.CrossEntropyLoss)

    def checked(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if cross_entropy and not y.is_floating_point() and y.dtype not in (torch.int64,
                                                                           torch.uint8):
            raise ValueError(f"y is {y.dtype}: class labels for cross-entropy must be int64; "
                             "convert them with y.long()")
        if cross_entropy and y.is_floating_point() and out.shape != y.shape:
            raise ValueError(f"y is {y.dtype} of shape {tuple(y.shape)} but the logits have "
                             f"shape {tuple(out.shape)}: class labels must be int64 (y.long()); "
                             "float targets are class probabilities of the logits' shape")
        if (y.is_floating_point() and isinstance(out, torch.Tensor) and out.shape != y.shape
                and out.numel() == y.numel()):
            raise ValueError(f"the model's output has shape {tuple(out.shape)} but y has shape "
                             f"{tuple(y.shape)}: the loss would broadcast them into a matrix; "
                             f"reshape y to {tuple(out.shape)} (e.g. y.reshape(-1, 1)) or the "
                             "output")
        return loss_fn(out, y)

    checked._dlbook_checked = True  # type: ignore[attr-defined]
    return checked


def _check_evaluate(model: Any, loader: Any, loss_fn: Any, accuracy: Any) -> None:
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(loader, torch.Tensor) or not hasattr(loader, "__iter__"):
        raise ValueError("loader must yield (x, y) batches, e.g. "
                         f"dlbook.data.loader((X, y), batch_size=100); got {type(loader).__name__}")
    if not callable(loss_fn):
        raise ValueError(f"loss_fn must be a function of (output, y), e.g. F.cross_entropy; got "
                         f"{type(loss_fn).__name__}")
    if accuracy not in (None, True, False):
        raise ValueError(f"accuracy must be None (decide from the targets), True or False; got "
                         f"{accuracy!r}")


def _check_fit(model: Any, optimizer: Any, epochs: Any, loss_fn: Any, val_loader: Any,
               accuracy: Any, scheduler: Any, scheduler_interval: Any, max_grad_norm: Any,
               early_stopping: Any, monitor: Any) -> None:
    if isinstance(epochs, bool) or not isinstance(epochs, numbers.Integral) or epochs < 1:
        raise ValueError(f"epochs must be an integer >= 1, got {epochs!r}")
    _check_evaluate(model, [], loss_fn, accuracy)
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ValueError("optimizer must be a torch.optim.Optimizer, e.g. "
                         f"torch.optim.Adam(model.parameters()), got {type(optimizer).__name__}")
    mine = {id(p) for p in model.parameters()}
    held = [p for group in optimizer.param_groups for p in group["params"]]
    if mine and not any(id(p) in mine for p in held):
        raise ValueError("the optimizer holds none of this model's parameters; build it from "
                         "this model: torch.optim.Adam(model.parameters(), ...)")
    if val_loader is not None:
        _check_evaluate(model, val_loader, loss_fn, accuracy)
    if scheduler is not None:
        if not hasattr(scheduler, "step") or getattr(scheduler, "optimizer", None) is not optimizer:
            raise ValueError("scheduler must be a torch.optim.lr_scheduler made for this "
                             "optimizer, e.g. CosineAnnealingLR(optimizer, T_max=steps)")
    if scheduler_interval not in ("step", "epoch"):
        raise ValueError(f"scheduler_interval must be 'step' or 'epoch', got "
                         f"{scheduler_interval!r}")
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau) and \
            scheduler_interval != "epoch":
        raise ValueError("ReduceLROnPlateau steps once per epoch on a loss: pass "
                         "scheduler_interval='epoch'")
    if max_grad_norm is not None and not (
            isinstance(max_grad_norm, numbers.Real) and not isinstance(max_grad_norm, bool)
            and 0 < max_grad_norm < math.inf):
        raise ValueError(f"max_grad_norm must be a positive number (e.g. 1.0) or None, got "
                         f"{max_grad_norm!r}")
    if monitor not in ("val_loss", "val_acc"):
        raise ValueError(f"monitor must be 'val_loss' or 'val_acc', got {monitor!r}")
    if early_stopping is not None:
        _check_early_stopping(early_stopping, val_loader, monitor, accuracy)


def _check_early_stopping(early_stopping: Any, val_loader: Any, monitor: Any,
                          accuracy: Any) -> None:
    if isinstance(early_stopping, bool) or not isinstance(early_stopping,
                                                          (numbers.Integral, EarlyStopping)):
        raise ValueError("early_stopping must be a patience (an integer >= 1) or a "
                         f"dlbook.optim.EarlyStopping, got {early_stopping!r}")
    if isinstance(early_stopping, numbers.Integral) and early_stopping < 1:
        raise ValueError(f"early_stopping (the patience) must be >= 1, got {early_stopping}")
    if isinstance(early_stopping, EarlyStopping) and early_stopping.epoch != -1:
        raise ValueError("this EarlyStopping has already been used; pass a fresh one "
                         "(or an integer patience)")
    if val_loader is None:
        raise ValueError("early stopping watches the validation set: pass val_loader")
    if monitor == "val_acc" and accuracy is False:
        raise ValueError("monitor='val_acc' needs accuracy; do not pass accuracy=False")
