"""The chunked KL of the nested fine-tune equals the autograd formula, value and gradient."""

import pytest
import torch

from edge import kl


def _reference(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(t.float(), -1)
    return (logp.exp() * (logp - torch.log_softmax(z.float(), -1))).sum(-1).mean()


@pytest.mark.parametrize("rows", [3, 7])  # chunks of 3 rows: several chunks and a short last one
def test_value_and_gradient_match_autograd(monkeypatch, rows):
    monkeypatch.setattr(kl, "_ROWS", rows)
    gen = torch.Generator().manual_seed(0)
    t = torch.randn(2, 5, 11, generator=gen) * 3  # (B, T, V)
    z = (torch.randn(2, 5, 11, generator=gen) * 3).requires_grad_()
    ref_z = z.detach().clone().requires_grad_()
    got, want = kl.kl_to_teacher(z, kl.teacher_targets(t)), _reference(ref_z, t)
    (got * 2.5).backward()
    (want * 2.5).backward()
    assert got.item() > 0.1
    assert torch.allclose(got, want, atol=1e-5)
    assert torch.allclose(z.grad, ref_z.grad, atol=1e-6)


def test_zero_when_the_student_is_the_teacher_and_bf16_grads_keep_their_dtype():
    t = torch.randn(4, 9, generator=torch.Generator().manual_seed(1))
    assert abs(kl.kl_to_teacher(t + 5.0, kl.teacher_targets(t)).item()) < 1e-5  # a shift leaves softmax alone
    z = t.flip(-1).to(torch.bfloat16).requires_grad_()
    kl.kl_to_teacher(z, kl.teacher_targets(t)).backward()
    assert z.grad.dtype == torch.bfloat16 and z.grad.abs().sum() > 0
