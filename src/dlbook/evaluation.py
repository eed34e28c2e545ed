"""Evaluating models (section 7.2): classifier metrics, calibration, and generative metrics.

From scratch, each checked in the tests against scikit-learn or a direct loop:

* :func:`confusion_matrix` -- counts of (true class, predicted class);
* :func:`precision_recall_f1` -- per class and macro-averaged, from the confusion matrix;
* :func:`reliability_bins` and :func:`expected_calibration_error` -- confidence against accuracy
  in equal-width bins (Guo et al., 2017);
* :func:`fit_temperature` -- temperature scaling, the one-parameter fix for over-confidence;
* :func:`perplexity` -- exp of the mean next-token loss on held-out tokens; exact match for
  generated answers is ``dlbook.tasks.exact_match`` (section 4.5), re-exported here.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from dlbook.lm import lm_loss
from dlbook.tasks import exact_match

__all__ = ["confusion_matrix", "precision_recall_f1", "reliability_bins",
           "expected_calibration_error", "fit_temperature", "perplexity", "exact_match",
           "residual_stream", "linear_probe"]


def _labels(y: torch.Tensor, name: str) -> torch.Tensor:
    y = torch.as_tensor(y)
    if y.dim() != 1 or y.is_floating_point() or y.dtype == torch.bool:
        raise ValueError(f"expected {name} as a 1-D integer tensor of class ids, got "
                         f"{y.dtype} of shape {tuple(y.shape)}")
    if len(y) and y.min() < 0:
        raise ValueError(f"{name} must be class ids >= 0, got {y.min().item()}")
    return y.long()


def confusion_matrix(y_true: torch.Tensor, y_pred: torch.Tensor,
                     n_classes: int | None = None) -> torch.Tensor:
    """C (K, K) with C[i, j] the number of examples of true class i predicted as class j (the
    convention of ``sklearn.metrics.confusion_matrix``). K defaults to the largest id + 1."""
    y_true, y_pred = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred need the same length, got {len(y_true)} and "
                         f"{len(y_pred)}")
    K = int(max(y_true.max(), y_pred.max())) + 1 if n_classes is None else n_classes
    if len(y_true) and max(y_true.max(), y_pred.max()) >= K:
        raise ValueError(f"class ids must be < n_classes={K}")
    flat = y_true.cpu() * K + y_pred.cpu()
    return torch.bincount(flat, minlength=K * K).reshape(K, K)


def precision_recall_f1(y_true: torch.Tensor, y_pred: torch.Tensor, n_classes: int | None = None,
                        average: str | None = "macro") -> dict[str, torch.Tensor | float]:
    """Precision TP / (TP + FP), recall TP / (TP + FN) and F1 (their harmonic mean) of each
    class, from the confusion matrix; ``average="macro"`` returns their unweighted means over
    the classes, ``None`` the per-class tensors. A 0/0 counts as 0 (scikit-learn's
    ``zero_division=0``)."""
    if average not in ("macro", None):
        raise ValueError(f'average must be "macro" or None, got {average!r}')
    C = confusion_matrix(y_true, y_pred, n_classes).double()
    tp = C.diag()
    predicted, actual = C.sum(0), C.sum(1)       # column sums: predicted as k; rows: truly k

    def ratio(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.where(b > 0, a / b.clamp(min=1), torch.zeros_like(a))

    precision, recall = ratio(tp, predicted), ratio(tp, actual)
    f1 = ratio(2 * precision * recall, precision + recall)
    out = {"precision": precision, "recall": recall, "f1": f1}
    if average == "macro":
        return {k: v.mean().item() for k, v in out.items()}
    return out


def _probs(probs: torch.Tensor, labels: torch.Tensor, n_bins: int) -> tuple[torch.Tensor,
                                                                           torch.Tensor]:
    if not isinstance(n_bins, int) or isinstance(n_bins, bool) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    if probs.dim() != 2:
        raise ValueError(f"expected probs of shape (N, classes), got {tuple(probs.shape)}: "
                         f"pass softmax(logits, dim=-1)")
    labels = _labels(labels, "labels")
    if len(labels) != len(probs):
        raise ValueError(f"need one label per row of probs, got {len(labels)} and {len(probs)}")
    confidence, predicted = probs.max(-1)
    return confidence.double(), (predicted == labels).double()


def reliability_bins(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 10
                     ) -> dict[str, torch.Tensor]:
    """The reliability diagram's numbers: the confidence (largest probability) of each example
    falls into one of ``n_bins`` equal-width bins ((m-1)/M, m/M]; per bin the count, the mean
    confidence and the accuracy (fraction whose most probable class is right; 0 if empty)."""
    confidence, correct = _probs(probs, labels, n_bins)
    bins = (confidence * n_bins).ceil().long().clamp(1, n_bins) - 1
    count = torch.bincount(bins, minlength=n_bins).double()
    conf_sum = torch.bincount(bins, confidence, minlength=n_bins)
    acc_sum = torch.bincount(bins, correct, minlength=n_bins)
    safe = count.clamp(min=1)
    return {"edges": torch.linspace(0, 1, n_bins + 1, dtype=torch.float64), "count": count,
            "confidence": conf_sum / safe, "accuracy": acc_sum / safe}


def expected_calibration_error(probs: torch.Tensor, labels: torch.Tensor, n_bins: int = 10
                               ) -> float:
    """ECE = sum over bins of (examples in the bin / N) * |accuracy - mean confidence|."""
    b = reliability_bins(probs, labels, n_bins)
    return float((b["count"] / b["count"].sum() * (b["accuracy"] - b["confidence"]).abs()).sum())


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor, steps: int = 100) -> float:
    """Temperature scaling (Guo et al., 2017): the T > 0 that minimises the cross-entropy of
    softmax(logits / T) on held-out data, found by L-BFGS on log T. Accuracy is unchanged."""
    labels = _labels(labels, "labels")
    logits = logits.detach().double()
    log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.5, max_iter=steps, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(logits / log_t.exp(), labels.to(logits.device))
        loss.backward()
        return loss

    opt.step(closure)
    return math.exp(log_t.item())


@torch.no_grad()
def perplexity(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """exp(mean next-token cross-entropy) of ``model`` on inputs x and targets y (B, T), targets
    -100 ignored: the number of equally likely tokens the model is, on average, choosing from."""
    was_training = model.training
    model.eval()
    loss = lm_loss(model, x, y).item()
    model.train(was_training)
    return math.exp(loss)


# ------------------------------------------------------------------------------ linear probes

@torch.no_grad()
def residual_stream(model: nn.Module, idx: torch.Tensor) -> list[torch.Tensor]:
    """The residual stream of a ``dlbook.gpt.GPT`` on token ids ``idx`` (batch, seq): the input
    of the first block (embeddings), then the output of every block; ``n_layers + 1`` tensors of
    shape (batch, seq, d_model)."""
    blocks = getattr(model, "blocks", None)
    if blocks is None or len(blocks) == 0:
        raise ValueError("residual_stream needs a GPT-like model with a list of .blocks")
    streams: list[torch.Tensor] = []
    hooks = [blocks[0].register_forward_pre_hook(lambda mod, args: streams.append(args[0]))]
    hooks += [b.register_forward_hook(lambda mod, args, out: streams.append(out)) for b in blocks]
    try:
        model(idx)
    finally:
        for h in hooks:
            h.remove()
    return [t.detach() for t in streams]


def linear_probe(features: torch.Tensor, labels: torch.Tensor, n_train: int,
                 weight_decay: float = 1e-3, max_iter: int = 200) -> float:
    """Fit a multinomial logistic regression (a *linear probe*) on the first ``n_train`` rows of
    ``features`` (n, d) to predict ``labels`` (n,), with L-BFGS in float64, and return its
    accuracy on the remaining rows. High accuracy means the property can be read off the
    representation by a linear map; it does not show that the model uses it."""
    features = torch.as_tensor(features)
    labels = torch.as_tensor(labels)
    if features.dim() != 2 or labels.dim() != 1 or len(features) != len(labels):
        raise ValueError(f"expected features (n, d) and labels (n,), got {tuple(features.shape)} "
                         f"and {tuple(labels.shape)}")
    if labels.is_floating_point() or (labels < 0).any():
        raise ValueError("labels must be class numbers 0, 1, 2, ...")
    if not 0 < n_train < len(labels):
        raise ValueError(f"n_train must leave rows to test on: 0 < n_train < {len(labels)}, "
                         f"got {n_train}")
    x = features.to(torch.float64)
    k = int(labels.max()) + 1
    w = torch.zeros(x.shape[1], k, dtype=torch.float64, requires_grad=True)
    b = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x[:n_train] @ w + b, labels[:n_train]) + weight_decay * (w ** 2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        return ((x[n_train:] @ w + b).argmax(1) == labels[n_train:]).double().mean().item()
