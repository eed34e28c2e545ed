"""dlbook.tasks: examples, the masked encoding and exact-match evaluation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dlbook import tasks
from dlbook.gpt import GPT, GPTConfig
from dlbook.lm import lm_loss


def test_make_example_for_each_task():
    assert str(tasks.make_example("reverse", [1, 2, 3])) == "R123=321"
    assert str(tasks.make_example("sort", [3, 1, 2, 1])) == "S3121=1123"
    ex = tasks.make_example("add", [9, 9])
    a, b = "".join(ex.prompt[1:-1]).split("+")
    assert "".join(ex.answer) == str(int(a) + int(b))
    assert ex.prompt[-1] == tasks.SEP


@pytest.mark.parametrize("bad", [[], [10], [1, -1], [1.0]])
def test_make_example_rejects_bad_digits(bad):
    with pytest.raises(ValueError, match="digits"):
        tasks.make_example("sort", bad)


def test_unknown_task_names_the_choices():
    with pytest.raises(ValueError, match="reverse"):
        tasks.examples("multiply", 3)


def test_examples_are_distinct_reproducible_and_exclude():
    test = tasks.examples(["reverse", "sort"], 300, min_length=3, max_length=3, seed=1)
    assert len(set(test)) == 300
    assert test == tasks.examples(["reverse", "sort"], 300, min_length=3, max_length=3, seed=1)
    train = tasks.examples(["reverse", "sort"], 2000, min_length=3, max_length=3, seed=2,
                           exclude=test, unique=False)
    assert set(train).isdisjoint(test)
    assert len(set(train)) < 2000                       # drawn with replacement
    assert {len(ex.prompt) for ex in train} == {5}


def test_examples_capacity_is_checked():
    with pytest.raises(ValueError, match="at most"):
        tasks.examples("sort", 11, min_length=1, max_length=1)
    everything = tasks.examples("sort", 10, min_length=1, max_length=1)
    with pytest.raises(ValueError, match="exclude"):
        tasks.examples("sort", 1, min_length=1, max_length=1, exclude=everything, unique=False)


def test_vocabulary_round_trip_and_errors():
    v = tasks.VOCAB
    ids = v.encode(tuple("S312=123."))
    assert v.decode(ids) == tuple("S312=123.")
    with pytest.raises(ValueError, match="not in the vocabulary"):
        v.encode(["x"])
    with pytest.raises(ValueError, match="special token"):
        tasks.Vocabulary(list("abc"))
    with pytest.raises(ValueError, match="distinct"):
        tasks.Vocabulary(list("aa._"))


def test_encode_masks_the_prompt_and_pads():
    batch = [tasks.make_example("reverse", [1, 2]), tasks.make_example("reverse", [1, 2, 3])]
    x, y = tasks.encode(batch)
    v = tasks.VOCAB
    assert x.shape == y.shape == (2, 8)                 # "R123=321." minus one token
    # the short example: R12=21. -> x = R12=21, y = ---21.
    assert v.decode(x[0, :6].tolist()) == tuple("R12=21")
    assert x[0, 6:].tolist() == [v.pad_id] * 2
    assert y[0].tolist() == [-100, -100, -100] + v.encode("21.") + [-100, -100]
    assert y[1].tolist() == [-100] * 4 + v.encode("321.")
    # every unmasked target is the next token of the sequence
    for i in range(2):
        keep = y[i] != -100
        nxt = torch.cat([x[i, 1:], torch.tensor([v.eos_id])])
        assert torch.equal(y[i][keep][:-1], nxt[keep][:-1])
    with pytest.raises(ValueError):
        tasks.encode([])


class Oracle(nn.Module):
    """A 'model' whose generate() writes the right answer (or a wrong one)."""

    def __init__(self, wrong: bool = False, stop: bool = True) -> None:
        super().__init__()
        self.p = nn.Parameter(torch.zeros(1))
        self.wrong, self.stop = wrong, stop

    def generate(self, idx, max_new_tokens, temperature=1.0, **kw):
        assert temperature == 0
        v = tasks.VOCAB
        rows = []
        for row in idx.tolist():
            prompt = v.decode(row)
            answer = list(prompt[1:-1][::-1])
            if self.wrong:
                answer[0] = "0" if answer[0] != "0" else "1"
            out = v.encode(answer) + ([v.eos_id] if self.stop else [v.stoi["1"]])
            out = (out + [v.pad_id] * max_new_tokens)[:max_new_tokens]
            rows.append(row + out)
        return torch.tensor(rows)


def test_exact_match_counts_whole_answers_that_stop():
    batch = tasks.examples("reverse", 50, min_length=1, max_length=6, seed=0)
    assert tasks.exact_match(Oracle(), batch) == 1.0
    assert tasks.exact_match(Oracle(wrong=True), batch) == 0.0
    assert tasks.exact_match(Oracle(stop=False), batch) == 0.0   # must write the end token
    answers = tasks.generate_answers(Oracle(), [ex.prompt for ex in batch])
    assert answers == [ex.answer for ex in batch]
    with pytest.raises(ValueError):
        tasks.exact_match(Oracle(), [])


def test_a_small_gpt_learns_to_reverse():
    torch.manual_seed(0)
    cfg = GPTConfig.gpt2(vocab_size=len(tasks.VOCAB), context_length=10, d_model=32,
                         n_layers=2, n_heads=4)
    model = GPT(cfg)
    test = tasks.examples("reverse", 100, min_length=3, max_length=3, seed=9)
    stream = tasks.examples("reverse", 150 * 32, min_length=3, max_length=3, seed=0,
                            exclude=test, unique=False)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    before = tasks.exact_match(model, test)
    for step in range(150):
        x, y = tasks.encode(stream[step * 32:(step + 1) * 32])
        loss = lm_loss(model, x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert before < 0.1
    assert tasks.exact_match(model, test) > 0.9
