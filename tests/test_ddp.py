"""dlbook.distributed.DDP and friends against one process on the global batch (float64, SGD)."""

import pytest
import torch

from dlbook.distributed import runs
from dlbook.distributed.ddp import DDP, allreduce_gradients
from dlbook.distributed.launch import launch


def max_diff(a, b):
    assert a.keys() == b.keys()
    return max((a[k] - b[k]).abs().max().item() for k in a)


METHODS = [
    "allreduce", "ddp", "torch_ddp", "none", "average_weights",
    ("ddp_buckets", "ddp", {"bucket_size_mb": 0.02}),
    ("ddp_one_bucket", "ddp", {"bucket_size_mb": 100}),
    ("ddp_accumulate", "ddp", {"micro_batches": 2}),
    ("torch_ddp_accumulate", "torch_ddp", {"micro_batches": 2}),
    ("ddp_untied", "ddp", {"tie_embeddings": False}),
    ("ddp_frozen", "ddp", {"frozen": ("pos_emb.weight", "blocks.0.norm1.weight")}),
    ("ddp_frozen_buckets", "ddp", {"frozen": ("pos_emb.weight", "blocks.0.norm1.weight"),
                                   "bucket_size_mb": 0.02}),
    ("ddp_adam", "ddp", {"optimizer": "adam", "lr": 1e-2}),
    ("average_weights_adam", "average_weights", {"optimizer": "adam", "lr": 1e-2}),
]


@pytest.fixture(scope="module")
def two():
    return launch(runs.compare_methods, 2, METHODS, steps=3)


@pytest.fixture(scope="module")
def four():
    return launch(runs.compare_methods, 4, ["ddp", ("ddp_buckets", "ddp",
                                                    {"bucket_size_mb": 0.02})], steps=2)


@pytest.fixture(scope="module")
def reference():
    return {"sgd": runs.train_single(steps=3), "adam": runs.train_single(steps=3, optimizer="adam",
                                                                         lr=1e-2),
            "untied": runs.train_single(steps=3, tie_embeddings=False),
            "sgd2": runs.train_single(steps=2),
            "frozen": runs.train_single(steps=3, frozen=("pos_emb.weight",
                                                         "blocks.0.norm1.weight"))}


@pytest.mark.parametrize("label", ["allreduce", "ddp", "torch_ddp", "average_weights",
                                   "ddp_buckets", "ddp_one_bucket", "ddp_accumulate",
                                   "torch_ddp_accumulate"])
def test_data_parallel_equals_one_process(two, reference, label):
    for rank in range(2):  # every replica ends with the same weights as the single process
        got = two[rank][label]
        assert max_diff(got["params"], reference["sgd"]["params"]) < 1e-12
        assert got["losses"] == pytest.approx(reference["sgd"]["losses"], abs=1e-12)


def test_untied_and_adam(two, reference):
    assert max_diff(two[0]["ddp_untied"]["params"], reference["untied"]["params"]) < 1e-12
    assert max_diff(two[1]["ddp_adam"]["params"], reference["adam"]["params"]) < 1e-12


def test_parameters_that_need_no_gradient_are_left_alone(two, reference):
    for label in ("ddp_frozen", "ddp_frozen_buckets"):
        got = two[1][label]
        assert max_diff(got["params"], reference["frozen"]["params"]) < 1e-12
        init = runs.tiny_gpt(0).pos_emb.weight
        assert torch.equal(got["params"]["pos_emb.weight"], init)  # never updated
        # frozen tensors are never all-reduced: 2 fewer messages than with everything trainable
    assert two[0]["ddp_frozen"]["buckets"] == two[0]["ddp"]["buckets"] - 2


def test_four_ranks(four, reference):
    for rank in range(4):
        for label in ("ddp", "ddp_buckets"):
            assert max_diff(four[rank][label]["params"], reference["sgd2"]["params"]) < 1e-12


def test_without_averaging_the_replicas_drift_apart(two, reference):
    gaps = two[0]["none"]["gaps"]
    assert gaps[0] > 1e-4 and gaps[-1] > gaps[0]          # different after one step, growing
    assert max_diff(two[0]["none"]["params"], two[1]["none"]["params"]) > 1e-4
    assert max_diff(two[0]["none"]["params"], reference["sgd"]["params"]) > 1e-4
    # averaging weights after a local step is gradient averaging for SGD, not for Adam
    assert max(two[0]["average_weights"]["gaps"]) == 0.0
    assert max_diff(two[0]["average_weights_adam"]["params"], reference["adam"]["params"]) > 1e-4


def test_buckets_overlap_backward_and_traffic_is_two_passes(two):
    per_param, buckets = two[0]["ddp"], two[0]["ddp_buckets"]
    n_tensors = per_param["buckets"]
    assert 1 < buckets["buckets"] < n_tensors and two[0]["ddp_one_bucket"]["buckets"] == 1
    for run in (per_param, buckets):
        # every bucket's all-reduce was launched by a hook while backward was still running
        assert run["launched_during_backward"] == run["buckets"]
    # 3 steps x one all-reduce per gradient byte: 2 (N-1)/N x 8 bytes x parameters x steps
    assert per_param["sent"]["all_reduce"] == pytest.approx(3 * 8 * per_param["n_params"])
    assert per_param["calls"]["all_reduce"] == 3 * n_tensors
    assert buckets["calls"]["all_reduce"] == 3 * buckets["buckets"]


def test_bad_input_and_no_group():
    with pytest.raises(ValueError, match="bucket_size_mb"):
        DDP(torch.nn.Linear(2, 2), bucket_size_mb=0)
    with pytest.raises(ValueError, match="nn.Module"):
        DDP(lambda x: x)
    with pytest.raises(ValueError, match="process group"):
        DDP(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="process group"):
        allreduce_gradients(torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match="divisible"):
        runs.shard_rows(torch.zeros(5, 2), 0, 2)
