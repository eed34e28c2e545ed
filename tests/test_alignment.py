"""dlbook.alignment: sequence log-probabilities, Bradley-Terry and DPO losses, reward model."""

import copy

import pytest
import torch
from torch.nn import functional as F

from dlbook import alignment as al
from dlbook import gpt, tasks

F64 = torch.float64


def tiny(seed=0):
    cfg = gpt.GPTConfig(vocab_size=len(al.VOCAB), context_length=16, d_model=16, n_layers=1,
                        n_heads=2)
    return gpt.init_weights_(gpt.GPT(cfg).double(), seed=seed)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sequence_logprob_matches_a_loop(seed):
    g = torch.Generator().manual_seed(seed)
    model = tiny(seed)
    V = len(al.VOCAB)
    prompts = [torch.randint(V, (int(n),), generator=g).tolist()
               for n in torch.randint(1, 6, (4,), generator=g)]
    comps = [torch.randint(V, (int(n),), generator=g).tolist()
             for n in torch.randint(1, 5, (4,), generator=g)]
    got = al.sequence_logprob(model, prompts, comps, pad_id=al.VOCAB.pad_id)
    for i, (p, c) in enumerate(zip(prompts, comps)):
        want = 0.0
        for k in range(len(c)):                     # one token at a time, no padding at all
            ctx = torch.tensor([p + c[:k]])
            want += F.log_softmax(model(ctx)[0, -1], -1)[c[k]]
        torch.testing.assert_close(got[i], want, rtol=1e-10, atol=1e-10)


def test_sequence_logprob_rejects_bad_input():
    model = tiny()
    with pytest.raises(ValueError, match="one completion per prompt"):
        al.sequence_logprob(model, [[1, 2]], [[3], [4]])
    with pytest.raises(ValueError, match="at least one token"):
        al.sequence_logprob(model, [[1, 2]], [[]])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_dpo_loss_formulas(seed):
    g = torch.Generator().manual_seed(seed)
    pc, pr, rc, rr = (torch.randn(7, generator=g, dtype=F64) * 3 for _ in range(4))
    beta = float(torch.rand((), generator=g)) + 0.05
    got = al.dpo_loss(pc, pr, rc, rr, beta)
    # direct formula
    want = -torch.log(torch.sigmoid(beta * ((pc - rc) - (pr - rr)))).mean()
    torch.testing.assert_close(got, want)
    # Rafailov et al.'s eq. 7 written with ratios pi/pi_ref
    ratio_w, ratio_l = torch.exp(pc) / torch.exp(rc), torch.exp(pr) / torch.exp(rr)
    paper = -torch.log(torch.sigmoid(beta * torch.log(ratio_w) - beta * torch.log(ratio_l))).mean()
    torch.testing.assert_close(got, paper)
    # DPO is Bradley-Terry on the implicit rewards beta * log(pi / pi_ref)
    torch.testing.assert_close(got, al.bradley_terry_loss(beta * (pc - rc), beta * (pr - rr)))


def test_dpo_and_bradley_terry_gradcheck():
    g = torch.Generator().manual_seed(0)
    args = [torch.randn(5, generator=g, dtype=F64, requires_grad=True) for _ in range(4)]
    assert torch.autograd.gradcheck(lambda *a: al.dpo_loss(*a, beta=0.3), args)
    assert torch.autograd.gradcheck(al.bradley_terry_loss, args[:2])
    # the gradient formula: d/d pc = -beta * sigma(-beta * margin) / B
    pc, pr, rc, rr = args
    loss = al.dpo_loss(pc, pr, rc, rr, beta=0.3)
    (grad,) = torch.autograd.grad(loss, pc)
    margin = (pc - rc) - (pr - rr)
    torch.testing.assert_close(grad, -0.3 * torch.sigmoid(-0.3 * margin).detach() / 5)


def test_loss_validation():
    with pytest.raises(ValueError, match="same shape"):
        al.bradley_terry_loss(torch.zeros(3), torch.zeros(2))
    with pytest.raises(ValueError, match="beta"):
        al.dpo_loss(*[torch.zeros(2)] * 4, beta=0.0)


def test_reward_model_reads_last_real_token():
    model = tiny()
    rm = al.RewardModel(model)
    torch.nn.init.normal_(rm.head.weight)
    a = torch.tensor([[3, 4, 5, al.VOCAB.pad_id, al.VOCAB.pad_id]])
    b = torch.tensor([[3, 4, 5, 7, 8]])
    torch.testing.assert_close(rm(a, torch.tensor([3])), rm(b, torch.tensor([3])))
    torch.testing.assert_close(rm(a, torch.tensor([3])), rm(a[:, :3], torch.tensor([3])))
    # the body is a copy: training the reward model leaves the language model unchanged
    assert rm.gpt.tok_emb.weight.data_ptr() != model.tok_emb.weight.data_ptr()


def test_preference_pairs_follow_bradley_terry():
    exs = tasks.examples("reverse", 2000, max_length=4, seed=0, unique=False)
    pairs = al.preference_pairs(exs, gap=1.5, seed=0)
    frac = sum(c[-2] == al.POLITE for _, c, _ in pairs) / len(pairs)
    assert abs(frac - torch.sigmoid(torch.tensor(1.5)).item()) < 0.03
    for p, c, r in pairs:
        assert set(c) ^ set(r) <= {al.POLITE} and c[-1] == r[-1] == tasks.EOS


def test_dpo_training_raises_the_preferred_completion():
    torch.manual_seed(0)
    ref = tiny()
    exs = tasks.examples("reverse", 200, max_length=2, seed=0, unique=False)
    pairs = al.preference_pairs(exs, gap=4.0, seed=0)
    policy = copy.deepcopy(ref)
    hist = al.train_dpo(policy, ref, pairs, steps=30, beta=0.5, batch_size=32, lr=3e-3)
    assert hist["loss"][-1] < hist["loss"][0]
    assert hist["margin"][-1] > 0.5
