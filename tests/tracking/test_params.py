"""Parameters for MLflow: flattening, limits, credentials left out; metrics from reports."""

from __future__ import annotations

import pytest

from granvit_pipeline.tracking.params import (
    MAX_VALUE_LENGTH,
    flatten_params,
    is_secret_key,
    kedro_params,
    metric_values,
    redact_uri,
)


@pytest.mark.parametrize(
    "key",
    ["password", "db_password", "hf_token", "api_key", "apiKey", "aws_secret_access_key",
     "AWS_SECRET_ACCESS_KEY", "credentials", "client-secret", "Authorization", "key"],
)  # fmt: skip
def test_credential_keys_are_recognised(key: str) -> None:
    assert is_secret_key(key)


@pytest.mark.parametrize(
    "key",
    ["tokenizer", "max_new_tokens", "tokens_per_s", "sort_keys", "keypoints", "monkey",
     "vocab_size", "lambda_distill", "box_precision"],
)  # fmt: skip
def test_ordinary_keys_are_kept(key: str) -> None:
    assert not is_secret_key(key)


def test_flatten_nested_params_to_strings() -> None:
    flat = flatten_params(
        {"stage1": {"training": {"steps": 10, "lr": 1e-5, "bf16": True}, "tasks": ["a", "b"]},
         "empty": {}, "none": None},
        prefix="pretrain",
    )  # fmt: skip
    assert flat == {
        "pretrain.stage1.training.steps": "10",
        "pretrain.stage1.training.lr": "1e-05",
        "pretrain.stage1.training.bf16": "True",
        "pretrain.stage1.tasks": '["a", "b"]',
        "pretrain.empty": "{}",
        "pretrain.none": "None",
    }


def test_credentials_never_reach_params() -> None:
    flat = flatten_params(
        {"s3": {"aws_secret_access_key": "AKIA-SECRET", "bucket": "b"},
         "credentials": {"user": "u", "pass": "p"},
         "db": "postgresql://mlflow:hunter2@db:5432/mlflow"}
    )  # fmt: skip
    assert flat == {"s3.bucket": "b", "db": "postgresql://mlflow:***@db:5432/mlflow"}
    assert "hunter2" not in redact_uri("see http://a:hunter2@host/x and s3://bucket/key")


def test_limits_and_bad_characters() -> None:
    flat = flatten_params({"long": "x" * 10_000, "k" * 300: 1, "odd name!(1)": 2, "a//b": 3})
    assert len(flat["long"]) == MAX_VALUE_LENGTH and flat["long"].endswith("[truncated]")
    assert "k" * 300 not in flat  # over MLflow's 250-character key limit: left out
    assert flat["odd name__1_"] == "2" and flat["a__b"] == "3"


def test_kedro_params_from_node_inputs() -> None:
    inputs = {
        "shards": object(),
        "params:pretrain.common": {"recipe": {"preset": "tiny"}},
        "params:pretrain.lm_warmup": {"training": {"steps": 2}},
        "params:service.api_token": "secret",
        "parameters": {"validate": {"max_rejected_fraction": 0.1}},
    }
    assert kedro_params(inputs) == {
        "pretrain.common.recipe.preset": "tiny",
        "pretrain.lm_warmup.training.steps": "2",
        "validate.max_rejected_fraction": "0.1",
    }


def test_metric_values_take_numbers_only() -> None:
    report = {"metrics": {"rec_acc50": 0.5, "probe": {"acc": 1}, "ok": True, "name": "x"}}
    assert metric_values(report, "metrics") == {"rec_acc50": 0.5, "probe.acc": 1.0}
    assert metric_values(report, "missing") == {}
    assert metric_values({"loss": 2}, "") == {"loss": 2.0}
