"""From a language model to an assistant (section 7.2): preference learning on a small GPT.

The pieces, each short enough to read:

* :func:`sequence_logprob` -- log p(completion | prompt) under a causal language model, the sum
  of the completion's token log-probabilities (the prompt is given, not scored);
* :func:`bradley_terry_loss` -- the loss of a reward model trained on pairwise preferences,
  -log sigma(r_chosen - r_rejected) (Bradley and Terry, 1952);
* :class:`RewardModel` -- a GPT whose language-model head is replaced by one scalar read at the
  last token of the sequence;
* :func:`dpo_loss` -- Direct Preference Optimization (Rafailov et al., 2023), the same logistic
  loss with the reward replaced by beta times the log-ratio of policy and reference model.

The synthetic task of the section: the prompts and answers of ``dlbook.tasks`` (reverse the
digits), where an answer may end with the "polite" token ``!`` before the end token. The
supervised fine-tuning data holds a minority of polite answers; the preferences prefer them.
:func:`polite_rate` measures the behaviour the preferences ask for.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from dlbook import tasks
from dlbook.lm import lm_loss

__all__ = ["POLITE", "VOCAB", "sequence_logprob", "bradley_terry_loss", "RewardModel", "dpo_loss",
           "sft_examples", "preference_pairs", "encode_pairs", "polite_rate", "train_sft",
           "train_reward_model", "train_dpo", "policy_logprobs"]

#: the token whose presence the preferences reward
POLITE = "!"
#: the vocabulary of ``dlbook.tasks`` plus the polite token
VOCAB = tasks.Vocabulary(tasks.VOCAB.tokens + [POLITE])

Ids = Sequence[Sequence[int]]


def _pad(seqs: Ids, pad_id: int, device: torch.device | str | None) -> torch.Tensor:
    T = max(len(s) for s in seqs)
    out = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = torch.as_tensor(list(s), dtype=torch.long)
    return out.to(device)


def _as_lists(x: Ids | torch.Tensor, name: str) -> list[list[int]]:
    if isinstance(x, torch.Tensor):
        if x.dim() != 2 or x.is_floating_point():
            raise ValueError(f"expected {name} as a 2-D integer tensor (batch, length) or a list "
                             f"of id lists, got shape {tuple(x.shape)}")
        return x.tolist()
    out = [list(map(int, s)) for s in x]
    if not out:
        raise ValueError(f"{name} is empty: pass at least one sequence")
    return out


def sequence_logprob(model: nn.Module, prompts: Ids | torch.Tensor,
                     completions: Ids | torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """log p(completion | prompt) for each pair, shape (B,): the sum over the completion's
    tokens of log-softmax(logits) at the token, the prompt's tokens not counted.

    ``prompts`` and ``completions`` are lists of token-id lists (lengths may differ) or 2-D
    tensors. Sequences are right-padded with ``pad_id``; a causal model cannot see the padding.
    """
    prompts, completions = _as_lists(prompts, "prompts"), _as_lists(completions, "completions")
    if len(prompts) != len(completions):
        raise ValueError(f"need one completion per prompt, got {len(prompts)} prompts and "
                         f"{len(completions)} completions")
    if any(len(p) == 0 for p in prompts) or any(len(c) == 0 for c in completions):
        raise ValueError("every prompt and every completion needs at least one token")
    device = next(model.parameters()).device
    seqs = [p + c for p, c in zip(prompts, completions)]
    ids = _pad(seqs, pad_id, device)
    x, y = ids[:, :-1], ids[:, 1:]                      # y[:, t] is the token after x[:, :t+1]
    mask = torch.zeros_like(y, dtype=torch.bool)
    for i, (p, c) in enumerate(zip(prompts, completions)):
        mask[i, len(p) - 1:len(p) - 1 + len(c)] = True  # the positions that predict c
    logp = F.log_softmax(model(x), dim=-1)
    token_logp = logp.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    return (token_logp * mask).sum(-1)


def bradley_terry_loss(r_chosen: torch.Tensor, r_rejected: torch.Tensor) -> torch.Tensor:
    """Mean of -log sigma(r_chosen - r_rejected): the negative log-likelihood of the observed
    preferences under the Bradley--Terry model P(chosen > rejected) = sigma(r_c - r_r)."""
    if r_chosen.shape != r_rejected.shape:
        raise ValueError(f"r_chosen and r_rejected must have the same shape, got "
                         f"{tuple(r_chosen.shape)} and {tuple(r_rejected.shape)}")
    return -F.logsigmoid(r_chosen - r_rejected).mean()


def dpo_loss(policy_chosen_logp: torch.Tensor, policy_rejected_logp: torch.Tensor,
             ref_chosen_logp: torch.Tensor, ref_rejected_logp: torch.Tensor,
             beta: float = 0.1) -> torch.Tensor:
    """Direct Preference Optimization (Rafailov et al., 2023, eq. 7), averaged over the pairs:

        -log sigma(beta * [(log pi(y_w|x) - log ref(y_w|x)) - (log pi(y_l|x) - log ref(y_l|x))])

    The arguments are sequence log-probabilities (:func:`sequence_logprob`), shape (B,); the
    reference model's are constants (computed without gradient)."""
    shapes = {tuple(t.shape) for t in (policy_chosen_logp, policy_rejected_logp,
                                        ref_chosen_logp, ref_rejected_logp)}
    if len(shapes) != 1:
        raise ValueError(f"the four log-probabilities must have the same shape, got {shapes}")
    if not beta > 0:
        raise ValueError(f"beta must be positive, got {beta}")
    chosen = policy_chosen_logp - ref_chosen_logp        # the implicit rewards, over beta
    rejected = policy_rejected_logp - ref_rejected_logp
    return bradley_terry_loss(beta * chosen, beta * rejected)


class RewardModel(nn.Module):
    """A reward model: a copy of a GPT's embeddings and blocks, its language-model head replaced
    by a linear layer to one number, read at the last real token of each sequence."""

    def __init__(self, gpt: nn.Module) -> None:
        super().__init__()
        self.gpt = copy.deepcopy(gpt)
        del self.gpt.lm_head                           # the body only; tok_emb stays
        d = self.gpt.config.d_model
        p = next(self.gpt.parameters())
        self.head = nn.Linear(d, 1, dtype=p.dtype, device=p.device)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, idx: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """idx (B, T) right-padded ids, lengths (B,) real lengths -> rewards (B,)."""
        g = self.gpt
        x = g.tok_emb(idx)
        if g.pos_emb is not None:
            x = x + g.pos_emb(torch.arange(idx.shape[1], device=idx.device))
        for block in g.blocks:
            x = block(x)
        h = g.norm_f(x)                                 # (B, T, d)
        last = h[torch.arange(len(idx), device=idx.device), lengths - 1]
        return self.head(last).squeeze(-1)


# --------------------------------------------------------------------------- the synthetic task

def sft_examples(n: int, polite_fraction: float, seed: int = 0, max_length: int = 4,
                 exclude: Sequence[tasks.Example] = ()) -> list[tasks.Example]:
    """``n`` reversal examples of 1..``max_length`` digits; a fraction ``polite_fraction`` of
    them (chosen at random) end their answer with the polite token."""
    if not 0.0 <= polite_fraction <= 1.0:
        raise ValueError(f"polite_fraction must be in [0, 1], got {polite_fraction}")
    rng = random.Random(seed + 1)
    out = []
    for ex in tasks.examples("reverse", n, max_length=max_length, seed=seed, unique=False,
                             exclude=exclude):
        if rng.random() < polite_fraction:
            ex = tasks.Example(ex.prompt, ex.answer + (POLITE,))
        out.append(ex)
    return out


def preference_pairs(prompts: Sequence[tasks.Example], gap: float = 2.0, seed: int = 0
                     ) -> list[tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]]:
    """(prompt, chosen, rejected) for each example: the two completions are the right answer
    with and without the polite token (plus the end token), and a simulated annotator prefers
    the polite one with probability sigma(gap), the Bradley--Terry model with true rewards
    differing by ``gap``."""
    g = torch.Generator().manual_seed(seed)
    p = torch.sigmoid(torch.tensor(float(gap), dtype=torch.float64))
    out = []
    for ex in prompts:
        answer = tuple(t for t in ex.answer if t != POLITE)
        polite, plain = answer + (POLITE, tasks.EOS), answer + (tasks.EOS,)
        prefers_polite = bool(torch.rand((), generator=g, dtype=torch.float64) < p)
        out.append((ex.prompt, polite, plain) if prefers_polite else (ex.prompt, plain, polite))
    return out


def encode_pairs(pairs: Sequence[tuple], vocab: tasks.Vocabulary = VOCAB
                 ) -> tuple[list[list[int]], list[list[int]], list[list[int]]]:
    """Token ids of the prompts, chosen and rejected completions of ``preference_pairs``."""
    return ([vocab.encode(p) for p, _, _ in pairs], [vocab.encode(c) for _, c, _ in pairs],
            [vocab.encode(r) for _, _, r in pairs])


def polite_rate(model: nn.Module, examples: Sequence[tasks.Example],
                vocab: tasks.Vocabulary = VOCAB) -> dict[str, float]:
    """Greedy decoding on the prompts: the fraction of answers that end with the polite token,
    and the exact match of the answer with the polite token removed (is the task still solved?)."""
    got = tasks.generate_answers(model, [ex.prompt for ex in examples], vocab,
                                 max_new_tokens=max(len(ex.answer) for ex in examples) + 2)
    polite = [len(a) > 0 and a[-1] == POLITE for a in got]
    right = [tuple(t for t in a if t != POLITE) == tuple(t for t in ex.answer if t != POLITE)
             for a, ex in zip(got, examples)]
    return {"polite": sum(polite) / len(got), "exact": sum(right) / len(got)}


# --------------------------------------------------------------------------- training loops

def train_sft(model: nn.Module, examples: Sequence[tasks.Example], *, steps: int,
              batch_size: int = 64, lr: float = 3e-3, seed: int = 0,
              vocab: tasks.Vocabulary = VOCAB) -> list[float]:
    """Supervised fine-tuning as in section 4.5: next-token loss on the answers only, AdamW."""
    device = next(model.parameters()).device
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    rng = random.Random(seed)
    losses = []
    model.train()
    for _ in range(steps):
        x, y = tasks.encode(rng.sample(list(examples), batch_size), vocab, device)
        loss = lm_loss(model, x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    model.eval()
    return losses


def _pair_batches(n: int, batch_size: int, steps: int, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    return [rng.sample(range(n), batch_size) for _ in range(steps)]


def train_reward_model(rm: RewardModel, pairs: Sequence[tuple], *, steps: int,
                       batch_size: int = 64, lr: float = 3e-3, seed: int = 0,
                       vocab: tasks.Vocabulary = VOCAB) -> list[float]:
    """Fit ``rm`` to the preferences with the Bradley--Terry loss; returns the losses."""
    device = next(rm.parameters()).device
    prompts, chosen, rejected = encode_pairs(pairs, vocab)
    seq_c = [p + c for p, c in zip(prompts, chosen)]
    seq_r = [p + r for p, r in zip(prompts, rejected)]
    opt = torch.optim.AdamW(rm.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    rm.train()
    for idx in _pair_batches(len(pairs), batch_size, steps, seed):
        rewards = []
        for seqs in (seq_c, seq_r):
            batch = [seqs[i] for i in idx]
            ids = _pad(batch, vocab.pad_id, device)
            lengths = torch.tensor([len(s) for s in batch], device=device)
            rewards.append(rm(ids, lengths))
        loss = bradley_terry_loss(*rewards)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    rm.eval()
    return losses


def policy_logprobs(model: nn.Module, pairs: Sequence[tuple], vocab: tasks.Vocabulary = VOCAB
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Sequence log-probabilities of the chosen and of the rejected completions, (B,) each."""
    prompts, chosen, rejected = encode_pairs(pairs, vocab)
    return (sequence_logprob(model, prompts, chosen, vocab.pad_id),
            sequence_logprob(model, prompts, rejected, vocab.pad_id))


def train_dpo(policy: nn.Module, reference: nn.Module, pairs: Sequence[tuple], *, steps: int,
              beta: float = 0.1, batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
              vocab: tasks.Vocabulary = VOCAB) -> dict[str, Any]:
    """Train ``policy`` (a copy of ``reference`` at the start) with :func:`dpo_loss`. The
    reference model's log-probabilities are computed once, without gradient."""
    with torch.no_grad():
        ref_c, ref_r = policy_logprobs(reference, pairs, vocab)
    opt = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=0.0)
    history: dict[str, list] = {"loss": [], "margin": []}
    policy.train()
    for idx in _pair_batches(len(pairs), batch_size, steps, seed):
        batch = [pairs[i] for i in idx]
        pol_c, pol_r = policy_logprobs(policy, batch, vocab)
        loss = dpo_loss(pol_c, pol_r, ref_c[idx], ref_r[idx], beta)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history["loss"].append(loss.item())
        history["margin"].append(((pol_c - ref_c[idx]) - (pol_r - ref_r[idx])).mean().item())
    policy.eval()
    return history
