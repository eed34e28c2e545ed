"""Algorithmic tasks as token sequences, and exact-match evaluation (sections 4.3 and 4.5).

A task example is a *prompt* and an *answer*, each a sequence of tokens (here single
characters). A language model sees them as one sequence::

    prompt (ends with the separator "=")   answer   end token
    R 3 9 1 4 =                            4 1 9 3  .

and is trained to predict the next token everywhere, with the loss *masked* to the answer and
the end token: the prompt is given, not predicted. At test time the model reads the prompt and
generates greedily until the end token; an example counts as solved only if every generated
token is right (*exact match*).

The same format serves instruction fine-tuning (section 4.5): a prompt, an answer, a
separator and an end token, the loss on the answer only. ``Vocabulary`` maps tokens to ids;
``examples`` draws unique examples of a task with a seed, never any of ``exclude`` (so a
held-out set is disjoint from the training set); ``encode`` turns examples into padded
``(x, y)`` batches whose ignored targets are -100 (what ``F.cross_entropy`` and
``dlbook.lm.lm_loss`` skip); ``exact_match`` decodes with ``model.generate``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import torch
from torch import nn

__all__ = ["SEP", "EOS", "PAD", "Example", "Vocabulary", "TASKS", "VOCAB", "make_example",
           "examples", "encode", "generate_answers", "exact_match"]

SEP, EOS, PAD = "=", ".", "_"
IGNORE = -100


class Example(NamedTuple):
    """One example: the prompt (ending with the separator) and the answer, as token tuples."""

    prompt: tuple[str, ...]
    answer: tuple[str, ...]

    def __str__(self) -> str:
        return "".join(self.prompt) + "".join(self.answer)


class Vocabulary:
    """Tokens <-> ids. Must contain the end token ``EOS`` and the padding token ``PAD``."""

    def __init__(self, tokens: Iterable[str]) -> None:
        self.tokens = list(tokens)
        if len(set(self.tokens)) != len(self.tokens):
            raise ValueError("the tokens of a vocabulary must be distinct")
        for special in (EOS, PAD):
            if special not in self.tokens:
                raise ValueError(f"the vocabulary needs the special token {special!r}: "
                                 f"add it to the tokens")
        self.stoi = {t: i for i, t in enumerate(self.tokens)}

    def __len__(self) -> int:
        return len(self.tokens)

    def __repr__(self) -> str:
        return f"Vocabulary({''.join(self.tokens)!r})"

    @property
    def eos_id(self) -> int:
        return self.stoi[EOS]

    @property
    def pad_id(self) -> int:
        return self.stoi[PAD]

    def encode(self, tokens: Iterable[str]) -> list[int]:
        try:
            return [self.stoi[t] for t in tokens]
        except KeyError as err:
            raise ValueError(f"token {err.args[0]!r} is not in the vocabulary "
                             f"{''.join(self.tokens)!r}") from None

    def decode(self, ids: Iterable[int]) -> tuple[str, ...]:
        return tuple(self.tokens[int(i)] for i in ids)


# ------------------------------------------------------------------------------- the tasks
# Each task maps a list of digits (and the random generator, for tasks that need more) to
# (prompt body, answer); the prompt is the task's marker, the body and the separator.

def _reverse(digits: list[int], rng: random.Random) -> tuple[str, str]:
    s = "".join(map(str, digits))
    return s, s[::-1]


def _sort(digits: list[int], rng: random.Random) -> tuple[str, str]:
    s = "".join(map(str, digits))
    return s, "".join(sorted(s))


def _add(digits: list[int], rng: random.Random) -> tuple[str, str]:
    # two numbers of len(digits) digits each (leading zeros allowed), the sum without them
    a = "".join(map(str, digits))
    b = "".join(str(rng.randrange(10)) for _ in digits)
    return f"{a}+{b}", str(int(a) + int(b))


#: name -> (marker token, function of the digits)
TASKS: dict[str, tuple[str, Callable[[list[int], random.Random], tuple[str, str]]]] = {
    "reverse": ("R", _reverse), "sort": ("S", _sort), "add": ("A", _add)}

#: the vocabulary of the digit tasks: digits, task markers, "+", the separator, end and padding
VOCAB = Vocabulary(list("0123456789") + [m for m, _ in TASKS.values()] + ["+", SEP, EOS, PAD])


def make_example(task: str, digits: Sequence[int], rng: random.Random | None = None) -> Example:
    """The example of ``task`` for these digits, e.g. ``make_example("sort", [3, 1, 2])`` is
    ``S312=`` -> ``123``."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")
    if not digits or any(not isinstance(d, int) or not 0 <= d <= 9 for d in digits):
        raise ValueError(f"digits must be a non-empty list of integers 0..9, got {digits!r}")
    marker, fn = TASKS[task]
    body, answer = fn(list(digits), rng or random.Random(0))
    return Example(tuple(marker + body + SEP), tuple(answer))


def examples(tasks: str | Sequence[str], n: int, *, min_length: int = 1, max_length: int = 8,
             seed: int = 0, exclude: Iterable[Example] = (), unique: bool = True
             ) -> list[Example]:
    """``n`` examples, tasks and lengths (digits per number) drawn uniformly, none of them in
    ``exclude``; distinct if ``unique`` (a test set), else drawn with replacement (a stream
    of training batches). The same seed gives the same list."""
    tasks = [tasks] if isinstance(tasks, str) else list(tasks)
    for task in tasks:
        if task not in TASKS:
            raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")
    if not 1 <= min_length <= max_length:
        raise ValueError(f"need 1 <= min_length <= max_length, got {min_length}, {max_length}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    rng = random.Random(seed)
    seen = set(exclude)
    out: list[Example] = []
    capacity = sum(10 ** (2 * L if t == "add" else L) for t in tasks
                   for L in range(min_length, max_length + 1))
    if unique and n + len(seen) > capacity:
        raise ValueError(f"asked for {n} distinct examples, but these tasks and lengths have "
                         f"at most {capacity}: allow longer inputs")
    if not unique and len(seen) >= capacity:
        raise ValueError("exclude holds every possible example: allow longer inputs")
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 100 * (n + 10):
            raise ValueError("could not draw enough new examples: allow longer inputs or "
                             "exclude fewer")
        task = rng.choice(tasks)
        length = rng.randint(min_length, max_length)
        ex = make_example(task, [rng.randrange(10) for _ in range(length)], rng)
        if ex not in seen:
            if unique:
                seen.add(ex)
            out.append(ex)
    return out


def encode(batch: Sequence[Example], vocab: Vocabulary = VOCAB, device: torch.device | str |
           None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs x and targets y, both (B, T), for next-token training on whole examples.

    The sequence is prompt + answer + EOS; x is it without its last token, y without its first
    (shifted by one). Targets inside the prompt and at padding are -100, so the loss counts the
    answer and the end token only. Shorter sequences are padded on the right, where a causal
    model cannot see them.
    """
    if not batch:
        raise ValueError("encode needs at least one example")
    seqs = [vocab.encode(ex.prompt + ex.answer + (EOS,)) for ex in batch]
    T = max(len(s) for s in seqs) - 1
    x = torch.full((len(seqs), T), vocab.pad_id, dtype=torch.long)
    y = torch.full((len(seqs), T), IGNORE, dtype=torch.long)
    for i, (s, ex) in enumerate(zip(seqs, batch)):
        n = len(s) - 1
        x[i, :n] = torch.tensor(s[:-1])
        start = len(ex.prompt) - 1            # y[start] is the first answer token
        y[i, start:n] = torch.tensor(s[len(ex.prompt):])
    return x.to(device), y.to(device)


@torch.no_grad()
def generate_answers(model: nn.Module, prompts: Sequence[Sequence[str]],
                     vocab: Vocabulary = VOCAB, max_new_tokens: int = 12,
                     batch_size: int = 512) -> list[tuple[str, ...]]:
    """Greedy answers (tokens before the first end token) for each prompt, computed with
    ``model.generate(..., temperature=0)`` on batches of prompts of equal length."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    answers: list[tuple[str, ...] | None] = [None] * len(prompts)
    by_length: dict[int, list[int]] = {}
    for i, p in enumerate(prompts):
        by_length.setdefault(len(p), []).append(i)
    for length, idx in sorted(by_length.items()):
        for j in range(0, len(idx), batch_size):
            part = idx[j:j + batch_size]
            x = torch.tensor([vocab.encode(prompts[i]) for i in part], device=device)
            out = model.generate(x, max_new_tokens, temperature=0)[:, length:].tolist()
            for i, ids in zip(part, out):
                ids = ids[:ids.index(vocab.eos_id)] if vocab.eos_id in ids else ids
                answers[i] = vocab.decode(ids)
    model.train(was_training)
    return answers  # type: ignore[return-value]


def exact_match(model: nn.Module, batch: Sequence[Example], vocab: Vocabulary = VOCAB,
                max_new_tokens: int | None = None) -> float:
    """The fraction of examples whose greedy answer equals the answer, token for token (and
    then stops). ``max_new_tokens`` defaults to the longest answer plus one (the end token)."""
    if not batch:
        raise ValueError("exact_match needs at least one example")
    if max_new_tokens is None:
        max_new_tokens = max(len(ex.answer) for ex in batch) + 1
    got = generate_answers(model, [ex.prompt for ex in batch], vocab, max_new_tokens)
    return sum(g == ex.answer for g, ex in zip(got, batch)) / len(batch)
