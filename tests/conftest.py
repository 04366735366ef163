"""Shared test configuration: hypothesis profiles, seeding and device selection."""

from __future__ import annotations

import os

import torch

# Without a GPU, the Triton kernel's tests run it on CPU tensors through Triton's interpreter;
# the flag must be set before triton is first imported.
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
from hypothesis import HealthCheck, settings

# Bounded example counts keep CI fast; HYPOTHESIS_PROFILE=thorough runs ten times more.
settings.register_profile(
    "ci", max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile("thorough", max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def _default_validation() -> None:
    """Every test starts with torch's default of validated arguments: the first ``torch.compile``
    in the process turns it off for good (``torch._dynamo`` patches
    ``Distribution.set_default_validate_args(False)``), which would make later tests order-dependent."""
    torch.distributions.Distribution.set_default_validate_args(__debug__)  # torch's own default
