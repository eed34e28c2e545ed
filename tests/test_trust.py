"""dlbook.trust against captum, opacus, autograd loops and hand computations."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlbook import trust
from dlbook.utils import portable_init_

F64 = torch.float64


def _model(seed, conv=False):
    torch.manual_seed(seed)
    if conv:
        m = nn.Sequential(nn.Unflatten(1, (1, 8, 8)), nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(),
                          nn.MaxPool2d(2), nn.Flatten(), nn.Linear(64, 10))
    else:
        m = nn.Sequential(nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 10))
    return portable_init_(m.to(F64), seed)


def _data(seed, n=6):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 64, generator=g, dtype=F64), torch.randint(0, 10, (n,), generator=g)


@pytest.mark.parametrize("seed,conv", [(0, False), (1, True), (2, True)])
@pytest.mark.parametrize("method", ["riemann_middle", "riemann_trapezoid", "riemann_left",
                                    "riemann_right"])
def test_integrated_gradients_equal_captum(seed, conv, method):
    from captum.attr import IntegratedGradients
    model, (x, y) = _model(seed, conv), _data(seed)
    base = torch.rand(1, 64, dtype=F64, generator=torch.Generator().manual_seed(seed)) * 0.1
    ours = trust.integrated_gradients(model, x, base, y, steps=7 + seed, method=method)
    ref = IntegratedGradients(model).attribute(x, base.expand_as(x), target=y, n_steps=7 + seed,
                                               method=method)
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-14)


def test_integrated_gradients_completeness():
    model, (x, y) = _model(3, conv=True), _data(3)
    ig = trust.integrated_gradients(model, x, None, y, steps=400)
    with torch.no_grad():
        gap = model(x).gather(1, y[:, None])[:, 0] - model(torch.zeros_like(x)).gather(
            1, y[:, None])[:, 0]
    torch.testing.assert_close(ig.sum(1), gap, rtol=0, atol=2e-3)


@pytest.mark.parametrize("seed", [0, 1])
def test_saliency_equals_captum(seed):
    from captum.attr import Saliency
    model, (x, y) = _model(seed, conv=bool(seed)), _data(seed)
    torch.testing.assert_close(trust.saliency(model, x, y), Saliency(model).attribute(x, y))
    torch.testing.assert_close(trust.saliency(model, x, y, abs=False),
                               Saliency(model).attribute(x, y, abs=False))


def test_spearman_and_randomised():
    a = torch.tensor([1.0, 5.0, 2.0, 9.0])
    assert trust.spearman(a, a * 3 + 1) == pytest.approx(1.0)
    assert trust.spearman(a, -a) == pytest.approx(-1.0)
    model = _model(0)
    other = trust.randomised(model, seed=5)
    assert not torch.equal(model[0].weight, other[0].weight)
    with pytest.raises(ValueError, match="same number"):
        trust.spearman(a, a[:3])


@pytest.mark.parametrize("seed,conv", [(0, False), (1, True)])
def test_per_example_grads_equal_a_loop(seed, conv):
    model, (x, y) = _model(seed, conv), _data(seed, n=5)
    grads = trust.per_example_grads(model, x, y)
    for i in range(len(x)):
        model.zero_grad()
        F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        for name, p in model.named_parameters():
            torch.testing.assert_close(grads[name][i], p.grad, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("seed,clip", [(0, 0.1), (1, 1.0), (2, 100.0)])
def test_dp_sgd_step_equals_opacus_without_noise(seed, clip):
    from opacus import PrivacyEngine
    x, y = _data(seed, n=8)
    ours, theirs = _model(seed, conv=bool(seed % 2)), _model(seed, conv=bool(seed % 2))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=8)
    opt = torch.optim.SGD(theirs.parameters(), lr=0.5)
    engine = PrivacyEngine()
    private, opt, loader = engine.make_private(module=theirs, optimizer=opt, data_loader=loader,
                                               noise_multiplier=0.0, max_grad_norm=clip,
                                               poisson_sampling=False)
    for _ in range(2):
        for xb, yb in loader:
            opt.zero_grad()
            F.cross_entropy(private(xb), yb).backward()
            opt.step()
        trust.dp_sgd_step(ours, x, y, lr=0.5, max_grad_norm=clip, noise_multiplier=0.0)
    for (name, p), q in zip(ours.named_parameters(), theirs.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14, msg=name)


def test_clip_and_noise_statistics():
    g = {"w": torch.zeros(4000, 3, dtype=F64)}
    gen = torch.Generator().manual_seed(0)
    out = trust.clip_and_noise(g, 2.0, 1.5, generator=gen, batch_size=1)["w"]
    assert out.shape == (3,)
    many = torch.stack([trust.clip_and_noise({"w": torch.zeros(1, 500, dtype=F64)}, 2.0, 1.5,
                                             generator=gen)["w"] for _ in range(20)])
    assert abs(many.std().item() - 3.0) < 0.1
    big = {"a": torch.full((3, 4), 10.0, dtype=F64), "b": torch.full((3, 2), -10.0, dtype=F64)}
    clipped = trust.clip_and_noise(big, 1.0, 0.0)
    norm = torch.cat([clipped["a"], clipped["b"]]).norm()
    assert abs(norm.item() - 1.0) < 1e-5
    with pytest.raises(ValueError, match="max_grad_norm"):
        trust.clip_and_noise(big, 0.0, 1.0)


def test_membership_advantage():
    assert trust.membership_advantage(torch.tensor([0.1, 0.1]), torch.tensor([2.0, 3.0])) == 1.0
    assert trust.membership_advantage(torch.tensor([1.0, 3.0]), torch.tensor([1.0, 3.0])) == 0.0
    assert trust.membership_advantage([0.5, 2.0], [1.0, 3.0], threshold=1.5) == 0.0
    with pytest.raises(ValueError):
        trust.membership_advantage([], [1.0])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fgsm_and_pgd(seed):
    model, (x, y) = _model(seed, conv=bool(seed)), _data(seed)
    eps = 0.1
    adv = trust.fgsm(model, x, y, eps)
    xr = x.clone().requires_grad_(True)
    F.cross_entropy(model(xr), y).backward()
    torch.testing.assert_close(adv, (x + eps * xr.grad.sign()).clamp(0, 1))
    one = trust.pgd(model, x, y, eps, alpha=eps, steps=1, random_start=False)
    torch.testing.assert_close(one, adv)
    many = trust.pgd(model, x, y, eps, alpha=0.03, steps=10,
                     generator=torch.Generator().manual_seed(seed))
    assert (many - x).abs().max() <= eps + 1e-12 and many.min() >= 0 and many.max() <= 1
    with torch.no_grad():
        assert F.cross_entropy(model(many), y) >= F.cross_entropy(model(x), y)


def test_federated_average_and_label_skew():
    a, b = {"w": torch.tensor([1.0, 2.0])}, {"w": torch.tensor([3.0, 6.0])}
    torch.testing.assert_close(trust.federated_average([a, b], [1, 3])["w"],
                               torch.tensor([2.5, 5.0]))
    y = torch.arange(100) % 10
    parts = trust.label_skew(y, clients=5, labels_per_client=2)
    assert sorted(torch.cat(parts).tolist()) == list(range(100))
    assert all(len(y[p].unique()) == 2 for p in parts)
    parts = trust.label_skew(y, clients=10, labels_per_client=3, seed=1)
    assert sorted(torch.cat(parts).tolist()) == list(range(100))
    with pytest.raises(ValueError, match="multiple"):
        trust.label_skew(y, clients=3, labels_per_client=3)
