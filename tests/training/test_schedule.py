"""The learning-rate schedule: linear warmup, then cosine to ``min_lr_ratio * lr``."""

from __future__ import annotations

import math

import pytest
import torch

from granvit_pipeline.training.schedule import lr_ratio, make_scheduler


def test_warmup_is_linear_and_reaches_the_peak() -> None:
    assert [lr_ratio(s, 100, 4, 0.1) for s in (1, 2, 4)] == [0.25, 0.5, 1.0]


def test_cosine_ends_at_the_floor_and_stays_there() -> None:
    assert lr_ratio(100, 100, 4, 0.1) == pytest.approx(0.1)
    assert lr_ratio(150, 100, 4, 0.1) == pytest.approx(0.1)  # a run extended past `steps`
    middle = lr_ratio(52, 100, 4, 0.1)  # half-way through the cosine part
    assert middle == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 0.5)))


def test_no_warmup_starts_at_the_peak() -> None:
    assert lr_ratio(1, 10, 0, 0.0) == pytest.approx(0.5 * (1 + math.cos(math.pi / 10)))


def test_scheduler_gives_each_step_its_ratio() -> None:
    """LambdaLR counts completed steps: the lr set before step s is the ratio of step s."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=2.0)
    scheduler = make_scheduler(optimizer, steps=10, warmup_steps=3, min_lr_ratio=0.2)
    seen = []
    for _ in range(10):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([2.0 * lr_ratio(s, 10, 3, 0.2) for s in range(1, 11)])
