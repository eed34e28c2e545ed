"""dlbook.evaluation against scikit-learn and direct loops on random configurations."""

import math

import numpy as np
import pytest
import torch
from sklearn import metrics

from dlbook import evaluation as ev
from dlbook import gpt, tasks
from dlbook.lm import lm_loss


@pytest.mark.parametrize("seed,K,n", [(0, 2, 50), (1, 3, 200), (2, 10, 500), (3, 5, 7)])
def test_classifier_metrics_equal_sklearn(seed, K, n):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(K, (n,), generator=g)
    p = torch.where(torch.rand(n, generator=g) < 0.6, y, torch.randint(K, (n,), generator=g))
    C = ev.confusion_matrix(y, p, K)
    np.testing.assert_array_equal(C.numpy(), metrics.confusion_matrix(y, p, labels=range(K)))
    per = ev.precision_recall_f1(y, p, K, average=None)
    pr, rc, f1, _ = metrics.precision_recall_fscore_support(y, p, labels=range(K),
                                                            zero_division=0)
    np.testing.assert_allclose(per["precision"].numpy(), pr)
    np.testing.assert_allclose(per["recall"].numpy(), rc)
    np.testing.assert_allclose(per["f1"].numpy(), f1)
    macro = ev.precision_recall_f1(y, p, K)
    assert macro["precision"] == pytest.approx(metrics.precision_score(
        y, p, labels=range(K), average="macro", zero_division=0))
    assert macro["f1"] == pytest.approx(metrics.f1_score(y, p, labels=range(K), average="macro",
                                                         zero_division=0))


def test_metric_validation():
    with pytest.raises(ValueError, match="same length"):
        ev.confusion_matrix(torch.tensor([0, 1]), torch.tensor([0]))
    with pytest.raises(ValueError, match="integer"):
        ev.confusion_matrix(torch.tensor([0.5]), torch.tensor([0]))
    with pytest.raises(ValueError, match="average"):
        ev.precision_recall_f1(torch.tensor([0]), torch.tensor([0]), average="micro")


@pytest.mark.parametrize("seed,n_bins", [(0, 10), (1, 15), (2, 5), (3, 1)])
def test_calibration_against_a_loop(seed, n_bins):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(300, 4, generator=g, dtype=torch.float64) * 2
    probs = logits.softmax(-1)
    labels = torch.randint(4, (300,), generator=g)
    bins = ev.reliability_bins(probs, labels, n_bins)
    ece = 0.0
    for m in range(n_bins):
        lo, hi = m / n_bins, (m + 1) / n_bins
        members = [i for i in range(300) if lo < probs[i].max() <= hi]
        assert bins["count"][m] == len(members)
        if members:
            conf = sum(probs[i].max().item() for i in members) / len(members)
            acc = sum(int(probs[i].argmax() == labels[i]) for i in members) / len(members)
            assert bins["confidence"][m].item() == pytest.approx(conf)
            assert bins["accuracy"][m].item() == pytest.approx(acc)
            ece += len(members) / 300 * abs(acc - conf)
    assert ev.expected_calibration_error(probs, labels, n_bins) == pytest.approx(ece)


def test_ece_of_a_calibrated_model_is_small_and_temperature_fixes_overconfidence():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(20000, 3, generator=g, dtype=torch.float64)
    labels = torch.multinomial(logits.softmax(-1), 1, generator=g).squeeze(1)  # calibrated
    assert ev.expected_calibration_error(logits.softmax(-1), labels) < 0.02
    hot = 3.0 * logits                                          # over-confident by T = 3
    assert ev.expected_calibration_error(hot.softmax(-1), labels) > 0.1
    T = ev.fit_temperature(hot, labels)
    assert T == pytest.approx(3.0, rel=0.05)


def test_perplexity_and_exact_match():
    cfg = gpt.GPTConfig(vocab_size=len(tasks.VOCAB), context_length=24, d_model=16, n_layers=1,
                        n_heads=2)
    model = gpt.init_weights_(gpt.GPT(cfg).double(), seed=0)
    exs = tasks.examples("reverse", 20, max_length=3, seed=0)
    x, y = tasks.encode(exs)
    assert ev.perplexity(model, x, y) == pytest.approx(math.exp(lm_loss(model, x, y).item()))
    assert ev.perplexity(model, x, y) == pytest.approx(len(tasks.VOCAB), rel=0.05)  # ~uniform
    assert ev.exact_match is tasks.exact_match


# ------------------------------------------------------------------------------ linear probes

def test_residual_stream_ends_where_the_head_reads():
    from dlbook import gpt
    from dlbook.evaluation import residual_stream
    config = gpt.GPTConfig(vocab_size=11, context_length=8, d_model=16, n_layers=3, n_heads=2)
    model = gpt.init_weights_(gpt.GPT(config).double(), seed=3).eval()
    idx = torch.randint(11, (4, 8), generator=torch.Generator().manual_seed(0))
    streams = residual_stream(model, idx)
    assert len(streams) == 4 and all(s.shape == (4, 8, 16) for s in streams)
    pos = model.pos_emb(torch.arange(8))
    torch.testing.assert_close(streams[0], model.tok_emb(idx) + pos)
    torch.testing.assert_close(model.lm_head(model.norm_f(streams[-1])), model(idx))
    assert not model.blocks[0]._forward_pre_hooks and not model.blocks[0]._forward_hooks


def test_linear_probe_reads_linear_information_only():
    from dlbook.evaluation import linear_probe
    g = torch.Generator().manual_seed(1)
    x = torch.randn(600, 5, generator=g, dtype=torch.float64)
    linear = (x[:, 0] + 2 * x[:, 1] > 0).long() + 2 * (x[:, 2] > 0).long()   # 4 classes
    assert linear_probe(x, linear, 300) > 0.9
    xor = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).long()                              # not linear
    assert linear_probe(x, xor, 300) < 0.65
    noise = torch.randint(3, (600,), generator=g)
    assert linear_probe(x, noise, 300) < 0.45


def test_linear_probe_bad_input():
    from dlbook.evaluation import linear_probe, residual_stream
    x = torch.zeros(10, 3)
    with pytest.raises(ValueError, match="n_train"):
        linear_probe(x, torch.zeros(10, dtype=torch.long), 10)
    with pytest.raises(ValueError, match="labels"):
        linear_probe(x, torch.zeros(10), 5)
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        linear_probe(x, torch.zeros(9, dtype=torch.long), 5)
    with pytest.raises(ValueError, match="blocks"):
        residual_stream(torch.nn.Linear(2, 2), torch.zeros(1, 2))
