"""From notebook to service (section 7.6): export a GPT, serve it on the loopback address with
streamed tokens and batched requests, measure it, and simulate continuous batching.

* :func:`export_gpt` / :func:`export_onnx` / :func:`onnx_logits`: ``torch.export`` and ONNX
  (run by onnxruntime), each checked against the eager model.
* :func:`make_app`: a FastAPI app whose ``POST /generate`` streams one token id per line; a
  background task collects concurrent requests into batches and runs one batched forward per
  generated token (with the key/value cache of section 4.4).
* :class:`Server`: starts uvicorn on 127.0.0.1 in a thread and always stops it on leaving the
  ``with`` block, even when the block raises.
* :func:`stream_generate` and :func:`load_test`: a client and a bounded local load test.
* :func:`simulate_batching`: static against continuous (iteration-level) batching, in decode
  steps, deterministic.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import warnings
import json
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np
import torch
from pydantic import BaseModel
from torch import nn

__all__ = ["export_gpt", "export_onnx", "onnx_session", "onnx_logits", "make_app", "Server", "stream_generate",
           "load_test", "LoadResult", "simulate_batching", "BatchStats", "LOOPBACK"]

LOOPBACK = ("127.0.0.1", "localhost")


# ------------------------------------------------------------------------------ export

def _check_tokens(example: Any) -> None:
    if not isinstance(example, torch.Tensor) or example.dim() != 2 or example.is_floating_point():
        raise ValueError("expected example token ids of shape (batch, seq), e.g. "
                         f"torch.randint(0, vocab, (2, 8)); got "
                         f"{getattr(example, 'shape', type(example).__name__)}")


def export_gpt(model: nn.Module, example: torch.Tensor, dynamic: bool = True,
               atol: float = 1e-5) -> torch.export.ExportedProgram:
    """``torch.export`` the model's forward on token ids ``example`` (batch, seq), with batch
    and sequence length dynamic, and check that the exported program gives the model's logits
    (within ``atol``) on the example."""
    _check_tokens(example)
    model.eval()
    shapes = None
    if dynamic:
        ctx = model.config.context_length
        shapes = {"idx": {0: torch.export.Dim("batch", max=1024),
                          1: torch.export.Dim("seq", max=ctx)}}
    with torch.no_grad():
        exported = torch.export.export(model, (example,), dynamic_shapes=shapes)
        torch.testing.assert_close(exported.module()(example), model(example), atol=atol, rtol=0)
    return exported


def export_onnx(model: nn.Module, example: torch.Tensor, path: str) -> str:
    """Write the model's forward to the ONNX file ``path`` (PyTorch's dynamo-based exporter,
    batch and sequence dynamic); return the path."""
    _check_tokens(example)
    model.eval()
    # the exporter reports its progress on stdout and logs optional extras it cannot find
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with torch.no_grad(), warnings.catch_warnings(), \
                contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (example,), path, dynamo=True, verbose=False,
                              input_names=["idx"], output_names=["logits"],
                              dynamic_shapes={"idx": {0: "batch", 1: "seq"}})
    finally:
        logger.setLevel(level)
    return path


def onnx_session(path: str) -> Any:
    """An onnxruntime ``InferenceSession`` (CPU) for the ONNX file ``path``."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def onnx_logits(model: Any, idx: torch.Tensor) -> torch.Tensor:
    """Run an ONNX file (a path, or a session from :func:`onnx_session`) with onnxruntime on
    token ids ``idx`` -> logits."""
    _check_tokens(idx)
    session = onnx_session(model) if isinstance(model, str) else model
    name = session.get_inputs()[0].name
    return torch.from_numpy(session.run(None, {name: idx.cpu().numpy()})[0])


# ------------------------------------------------------------------------------ the service

class GenerateRequest(BaseModel):
    """The body of ``POST /generate``."""
    prompt: list[int]
    max_new_tokens: int = 16


@dataclass
class _Request:
    prompt: list[int]
    max_new_tokens: int
    out: asyncio.Queue = field(default_factory=asyncio.Queue)


class Batcher:
    """Collects requests for up to ``max_wait`` seconds or until ``max_batch`` are waiting, then
    generates for the whole batch greedily, one batched forward per token. Requests with the
    same prompt length share a batch (so no padding is needed); the others wait for the next."""

    def __init__(self, model: nn.Module, max_batch: int = 8, max_wait: float = 0.005) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be a positive integer, got {max_batch}")
        self.model, self.max_batch, self.max_wait = model.eval(), max_batch, max_wait
        self.queue: asyncio.Queue[_Request] = asyncio.Queue()
        self.pending: list[_Request] = []
        self.batch_sizes: list[int] = []           # the size of every batch run, for a report

    async def submit(self, prompt: list[int], max_new_tokens: int) -> _Request:
        request = _Request(prompt, max_new_tokens)
        await self.queue.put(request)
        return request

    async def _collect(self) -> list[_Request]:
        if not self.pending:
            self.pending.append(await self.queue.get())
        deadline = time.perf_counter() + self.max_wait
        while len(self.pending) < 4 * self.max_batch:
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            try:
                self.pending.append(await asyncio.wait_for(self.queue.get(), left))
            except asyncio.TimeoutError:
                break
        length = len(self.pending[0].prompt)
        batch = [r for r in self.pending if len(r.prompt) == length][:self.max_batch]
        self.pending = [r for r in self.pending if r not in batch]
        return batch

    def _generate(self, batch: list[_Request], loop: asyncio.AbstractEventLoop) -> None:
        """Greedy decoding for the batch with a KV cache; each token goes to its request's
        queue as soon as it exists (that is the streaming)."""
        model = self.model
        idx = torch.tensor([r.prompt for r in batch], device=next(model.parameters()).device)
        steps = max(r.max_new_tokens for r in batch)
        caches = model.new_caches()
        with torch.no_grad():
            logits = model(idx, caches)
            for step in range(steps):
                token = logits[:, -1].argmax(-1, keepdim=True)          # (B, 1)
                for r, t in zip(batch, token.tolist()):
                    if step < r.max_new_tokens:
                        loop.call_soon_threadsafe(r.out.put_nowait, t[0])
                if step + 1 < steps:
                    logits = model(token, caches)
        for r in batch:
            loop.call_soon_threadsafe(r.out.put_nowait, None)            # end of stream

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            self.batch_sizes.append(len(batch))
            try:
                await asyncio.to_thread(self._generate, batch, loop)
            except Exception as error:                                 # tell the clients
                for r in batch:
                    r.out.put_nowait(error)


def make_app(model: nn.Module, max_batch: int = 8, max_wait: float = 0.005) -> Any:
    """A FastAPI app: ``POST /generate`` with JSON ``{"prompt": [ids], "max_new_tokens": n}``
    streams the greedily generated token ids, one per line; ``GET /health`` says ok."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, HTTPException
    from fastapi.responses import StreamingResponse

    vocab, ctx = model.config.vocab_size, model.config.context_length
    @asynccontextmanager
    async def lifespan(app: Any):
        app.state.batcher = Batcher(model, max_batch, max_wait)
        task = asyncio.create_task(app.state.batcher.run())
        try:
            yield
        finally:
            task.cancel()

    app = FastAPI(lifespan=lifespan)

    @app.get("/health")
    async def health():
        return {"ok": True, "batch_sizes": app.state.batcher.batch_sizes}

    @app.post("/generate")
    async def generate(body: GenerateRequest):
        if not body.prompt or any(not 0 <= t < vocab for t in body.prompt):
            raise HTTPException(422, f"prompt must be a non-empty list of ids in [0, {vocab})")
        if not 1 <= body.max_new_tokens or len(body.prompt) + body.max_new_tokens > ctx:
            raise HTTPException(422, f"need 1 <= max_new_tokens and prompt + new <= {ctx}")
        request = await app.state.batcher.submit(body.prompt, body.max_new_tokens)

        async def tokens() -> Any:
            while (item := await request.out.get()) is not None:
                if isinstance(item, Exception):
                    raise item
                yield f"{item}\n"

        return StreamingResponse(tokens(), media_type="text/plain")

    return app


class Server:
    """``with Server(app) as url:`` runs uvicorn on 127.0.0.1 (a free port chosen by the
    operating system) in a background thread; leaving the block, normally or by an exception,
    stops the server and closes the port."""

    def __init__(self, app: Any, host: str = "127.0.0.1", port: int = 0,
                 timeout: float = 10.0) -> None:
        if host not in LOOPBACK:
            raise ValueError(f"the service listens only on the loopback address: use "
                             f"host='127.0.0.1' (got {host!r})")
        self.app, self.port, self.timeout = app, port, timeout
        self.url: str | None = None

    def __enter__(self) -> str:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", self.port))
        self.port = self.sock.getsockname()[1]
        config = uvicorn.Config(self.app, log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)
        self.thread.start()
        try:
            deadline = time.monotonic() + self.timeout
            while not self.server.started:
                if not self.thread.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError("the server did not start")
                time.sleep(0.01)
        except BaseException:
            self.stop()
            raise
        self.url = f"http://127.0.0.1:{self.port}"
        return self.url

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(self.timeout)
        self.sock.close()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex((host, port)) == 0


# ------------------------------------------------------------------------------ clients

def stream_generate(url: str, prompt: list[int], max_new_tokens: int = 16,
                    timeout: float = 30.0) -> tuple[list[int], float, float]:
    """POST a prompt, read the streamed tokens -> (tokens, seconds to the first token,
    seconds in all)."""
    import httpx

    start = time.perf_counter()
    first, tokens = None, []
    with httpx.stream("POST", url + "/generate", timeout=timeout,
                      json={"prompt": prompt, "max_new_tokens": max_new_tokens}) as response:
        if response.is_error:
            response.read()                    # so that the error's body can be shown
            response.raise_for_status()
        for line in response.iter_lines():
            if line:
                first = time.perf_counter() - start if first is None else first
                tokens.append(int(line))
    return tokens, (first or 0.0), time.perf_counter() - start


@dataclass
class LoadResult:
    tokens: list[list[int]]         # every request's tokens, in the order of the prompts
    latencies: list[float]          # seconds per request
    seconds: float                  # wall-clock time of the whole test

    @property
    def throughput(self) -> float:
        """Generated tokens per second."""
        return sum(len(t) for t in self.tokens) / self.seconds

    @property
    def mean_latency(self) -> float:
        return float(np.mean(self.latencies))


def load_test(url: str, prompts: list[list[int]], max_new_tokens: int = 16,
              concurrency: int = 8) -> LoadResult:
    """Send every prompt, at most ``concurrency`` at a time (threads), and time it."""
    if not 1 <= concurrency <= 64:
        raise ValueError(f"concurrency must be in [1, 64] (a bounded test), got {concurrency}")
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(lambda p: stream_generate(url, p, max_new_tokens), prompts))
    seconds = time.perf_counter() - start
    return LoadResult([r[0] for r in results], [r[2] for r in results], seconds)


# ------------------------------------------------------------------------------ simulation

@dataclass
class BatchStats:
    latency: np.ndarray            # steps from arrival to the last token, per request
    steps: int                     # decode steps until the last request finished
    busy_steps: int                # steps in which the model ran
    utilisation: float             # useful tokens / (max_batch · busy steps)

    @property
    def mean_latency(self) -> float:
        return float(self.latency.mean())


def simulate_batching(arrivals: Any, lengths: Any, max_batch: int,
                      policy: str = "continuous") -> BatchStats:
    """Requests arrive at decode step ``arrivals[i]`` and need ``lengths[i]`` tokens; one step
    gives every request in the batch one token. ``"static"``: when the model is free, take up to
    ``max_batch`` waiting requests and run until the longest is done. ``"continuous"``
    (iteration-level scheduling, Yu et al. 2022): after every step, finished requests leave and
    waiting ones take the free slots. A request that arrives at step t can be served from step
    t; finishing at the end of step s gives latency s + 1 - t."""
    arrivals = np.asarray(arrivals, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    if arrivals.shape != lengths.shape or arrivals.ndim != 1 or len(arrivals) == 0:
        raise ValueError("arrivals and lengths must be 1-d and of the same, non-zero length")
    if (lengths < 1).any() or (arrivals < 0).any():
        raise ValueError("lengths must be >= 1 and arrivals >= 0")
    if policy not in ("static", "continuous"):
        raise ValueError(f"policy must be 'static' or 'continuous', got {policy!r}")
    if max_batch < 1:
        raise ValueError(f"max_batch must be a positive integer, got {max_batch}")
    order = list(np.argsort(arrivals, kind="stable"))
    finish = np.zeros(len(arrivals), dtype=np.int64)
    left = lengths.copy()
    active: list[int] = []
    t = busy = 0
    while order or active:
        if policy == "continuous" or not active:
            while order and len(active) < max_batch and arrivals[order[0]] <= t:
                active.append(order.pop(0))
        if not active:                              # idle until the next arrival
            t = int(arrivals[order[0]])
            continue
        busy += 1
        for i in active:
            if left[i] > 0:
                left[i] -= 1
                if left[i] == 0:
                    finish[i] = t + 1
        t += 1
        if policy == "continuous":
            active = [i for i in active if left[i] > 0]
        elif all(left[i] == 0 for i in active):
            active = []
    return BatchStats(finish - arrivals, t, busy, float(lengths.sum() / (max_batch * busy)))
