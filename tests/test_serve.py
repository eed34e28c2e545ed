"""Tests of dlbook.serve: exports match the model, the service streams the same tokens as
GPT.generate, batches concurrent requests, stays on the loopback address and always stops."""

import numpy as np
import pytest
import torch

from dlbook import serve
from dlbook.gpt import GPT, GPTConfig, init_weights_

CONFIGS = [
    GPTConfig.gpt2(vocab_size=50, context_length=32, d_model=16, n_layers=2, n_heads=2),
    GPTConfig.llama(vocab_size=40, context_length=32, d_model=16, n_layers=1, n_heads=4,
                    n_kv_heads=2),
]


def _model(config, seed=0, dtype=torch.float32):
    return init_weights_(GPT(config), seed=seed).to(dtype).eval()


@pytest.mark.parametrize("config", CONFIGS)
def test_torch_export_matches_on_other_shapes(config):
    model = _model(config)
    g = torch.Generator().manual_seed(1)
    exported = serve.export_gpt(model, torch.randint(0, config.vocab_size, (2, 6), generator=g))
    for shape in [(1, 3), (4, 11)]:
        x = torch.randint(0, config.vocab_size, shape, generator=g)
        torch.testing.assert_close(exported.module()(x), model(x), atol=1e-5, rtol=0)


def test_onnx_matches_model(tmp_path):
    config = CONFIGS[0]
    model = _model(config, seed=3)
    g = torch.Generator().manual_seed(2)
    path = serve.export_onnx(model, torch.randint(0, 50, (2, 5), generator=g),
                             str(tmp_path / "gpt.onnx"))
    for shape in [(1, 4), (3, 9)]:
        x = torch.randint(0, 50, shape, generator=g)
        with torch.no_grad():
            torch.testing.assert_close(serve.onnx_logits(path, x), model(x), atol=1e-5, rtol=0)


def test_export_rejects_float_input():
    with pytest.raises(ValueError, match="token ids"):
        serve.export_gpt(_model(CONFIGS[0]), torch.zeros(2, 3))


def test_server_refuses_other_hosts():
    for host in ("0.0.0.0", "192.168.1.2", "::"):
        with pytest.raises(ValueError, match="127.0.0.1"):
            serve.Server(object(), host=host)


def test_service_streams_greedy_tokens_batches_and_stops():
    config = CONFIGS[1]
    model = _model(config, dtype=torch.float64)
    app = serve.make_app(model, max_batch=4, max_wait=0.02)
    prompts = [[i % 40, (3 * i) % 40, 7] for i in range(8)] + [[5, 6]]
    with serve.Server(app) as url:
        port = int(url.rsplit(":", 1)[1])
        assert url.startswith("http://127.0.0.1:") and serve.port_open(port)
        result = serve.load_test(url, prompts, max_new_tokens=5, concurrency=8)
        import httpx
        sizes = httpx.get(url + "/health").json()["batch_sizes"]
        bad = httpx.post(url + "/generate", json={"prompt": [99], "max_new_tokens": 2})
        assert bad.status_code == 422
    assert not serve.port_open(port)
    for prompt, tokens in zip(prompts, result.tokens):
        want = model.generate(torch.tensor([prompt]), 5, temperature=0)[0, len(prompt):]
        assert tokens == want.tolist()
    assert max(sizes) > 1 and max(sizes) <= 4 and sum(sizes) == len(prompts)
    assert result.throughput > 0 and len(result.latencies) == len(prompts)


def test_server_stops_when_the_block_raises():
    app = serve.make_app(_model(CONFIGS[0]), max_batch=2)
    with pytest.raises(ZeroDivisionError):
        with serve.Server(app) as url:
            port = int(url.rsplit(":", 1)[1])
            serve.stream_generate(url, [1, 2], 2)
            1 / 0
    assert not serve.port_open(port)
    with pytest.raises(Exception):       # the server is gone: a request fails
        serve.stream_generate(url, [1, 2], 2, timeout=2)


def _reference(arrivals, lengths, max_batch, policy):
    """The same schedule written step by step with explicit slots."""
    n = len(arrivals)
    waiting = sorted(range(n), key=lambda i: (arrivals[i], i))
    slots, left, finish, t, busy = [], list(lengths), [0] * n, 0, 0
    while waiting or slots:
        can_admit = policy == "continuous" or not slots
        if can_admit:
            while waiting and len(slots) < max_batch and arrivals[waiting[0]] <= t:
                slots.append(waiting.pop(0))
        if not slots:
            t += 1
            continue
        busy += 1
        for i in slots:
            if left[i]:
                left[i] -= 1
                if not left[i]:
                    finish[i] = t + 1
        t += 1
        if policy == "continuous":
            slots = [i for i in slots if left[i]]
        elif not any(left[i] for i in slots):
            slots = []
    return [f - a for f, a in zip(finish, arrivals)], busy


@pytest.mark.parametrize("seed", range(6))
def test_simulation_matches_reference(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 30))
    arrivals = rng.integers(0, 80, n)
    lengths = rng.integers(1, 25, n)
    max_batch = int(rng.integers(1, 6))
    for policy in ("static", "continuous"):
        stats = serve.simulate_batching(arrivals, lengths, max_batch, policy)
        latency, busy = _reference(list(arrivals), list(lengths), max_batch, policy)
        assert stats.latency.tolist() == latency and stats.busy_steps == busy
        assert 0 < stats.utilisation <= 1
    static = serve.simulate_batching(arrivals, lengths, max_batch, "static")
    cont = serve.simulate_batching(arrivals, lengths, max_batch, "continuous")
    assert cont.mean_latency <= static.mean_latency + 1e-9 or max_batch == 1


def test_simulation_hand_case_and_errors():
    # two requests at step 0 of lengths 1 and 4, batch 1: 1, then 4 more steps
    s = serve.simulate_batching([0, 0], [1, 4], 1, "static")
    assert s.latency.tolist() == [1, 5] and s.utilisation == 1.0
    s = serve.simulate_batching([0, 0, 1], [1, 4, 2], 2, "continuous")
    assert s.latency.tolist() == [1, 4, 2]
    s = serve.simulate_batching([0, 0, 1], [1, 4, 2], 2, "static")
    assert s.latency.tolist() == [1, 4, 5]
    with pytest.raises(ValueError, match="policy"):
        serve.simulate_batching([0], [1], 1, "dynamic")
    with pytest.raises(ValueError, match="lengths"):
        serve.simulate_batching([0], [0], 1)
