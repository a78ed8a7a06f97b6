"""Parity's pass criteria: fp32 tolerance relative to the logits' magnitude, agreement otherwise.

The artifact side here is the eager reference itself plus a known error (what an fp32 kernel
that adds in another order gives), so the test controls exactly how far off it is; real
runtimes against eager are test_matrix's."""

from __future__ import annotations

import numpy as np
import pytest

from exporters import parity


class Offset:
    """Returns the reference's logits (scaled by ``scale``) plus ``error``: a prefill of every
    position and one decode step per fed token, as a Core ML runner does."""

    label = "reference + error"

    def __init__(self, ref: dict, error: float):
        self.ref, self.error = ref, error

    def prefill(self, prompt):
        return self.ref["prefill"] + self.error

    def decode(self, token: int, position: int):
        return self.ref["steps"][position - self.ref["prompt"].shape[1]] + self.error


@pytest.fixture
def ref(tiny_model, val_tokens):
    return parity.reference(tiny_model, val_tokens[:1, :16], steps=4)


def _scaled(ref: dict, factor: float) -> dict:
    return {**ref, "prefill": ref["prefill"] * factor, "steps": ref["steps"] * factor}


def test_thresholds_per_precision():
    assert parity.thresholds("fp32", 30.0)["prefill_max_abs"] == pytest.approx(3e-3)
    assert parity.thresholds("fp32", 0.2)["decode_max_abs"] == pytest.approx(1e-4)  # never under 1e-4
    assert parity.thresholds("int8", 30.0) == {"greedy_agreement": parity.MIN_AGREEMENT}


@pytest.mark.parametrize("factor", [1.0, 40.0])
def test_fp32_error_passes_under_the_scaled_limit_and_fails_over_it(ref, factor):
    big = _scaled(ref, factor)  # factor 40: logits the size of a real model's
    scale = max(np.abs(big["prefill"]).max(), np.abs(big["steps"]).max())
    limit = 1e-4 * max(1.0, scale)
    ok = parity.check(Offset(big, 0.5 * limit), big, "fp32")
    assert ok["passed"] and ok["logit_scale"] == pytest.approx(scale)
    assert ok["prefill_max_abs"] == pytest.approx(0.5 * limit, rel=1e-3)
    bad = parity.check(Offset(big, 2 * limit), big, "fp32")
    assert not bad["passed"] and any("decode_max_abs" in f for f in bad["failures"])


def test_quantized_passes_on_agreement_not_on_closeness(ref):
    off = parity.check(Offset(ref, 0.3), ref, "int8")  # a constant shift keeps every argmax
    assert off["passed"] and off["greedy_agreement"] == 1.0 and off["decode_max_abs"] > 0.29


def test_non_finite_logits_never_pass(ref):
    """An fp16 overflow can leave every argmax right; inf logits still fail, and the record has
    no NaN (it is written into JSON metadata and manifests)."""
    steps = ref["steps"].copy()
    steps[1, 3] = -np.inf  # not the argmax: agreement stays whole
    bad = parity.check(Offset({**ref, "steps": steps}, 0.0), ref, "fp16")
    assert not bad["passed"] and bad["non_finite_logits"] == 1 and bad["greedy_agreement"] == 1.0
    assert bad["kl_mean"] is None and "non_finite_logits 1 > 0" in bad["failures"]
    assert "KL mean not finite" in parity.summary(bad)
    good = parity.check(Offset(ref, 0.0), ref, "fp16")
    assert good["passed"] and good["non_finite_logits"] == 0
