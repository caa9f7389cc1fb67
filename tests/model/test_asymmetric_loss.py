import pytest
import torch

from modeling_q2l import AsymmetricLoss


def formula_asl(logits, labels, gamma_neg, gamma_pos, clip, eps):
    """The ASL of the paper written out term by term (the focusing weight is a constant)."""
    total = torch.zeros((), dtype=torch.float64)
    for z, y in zip(logits.flatten().double(), labels.flatten().double()):
        if y == -1:
            continue
        p = torch.sigmoid(z)
        if y == 1:
            total = total - (1 - p.detach()) ** gamma_pos * torch.log(p.clamp(min=eps))
        else:
            p_m = (p - clip).clamp(min=0)
            total = total - p_m.detach() ** gamma_neg * torch.log((1 - p_m).clamp(min=eps))
    return total


def authors_asl(x, y, gamma_neg=4, gamma_pos=1, clip=0.05, eps=1e-8):
    """The ASL authors' forward (without their global grad-mode switch), for value parity."""
    x_sigmoid = torch.sigmoid(x)
    xs_pos, xs_neg = x_sigmoid, 1 - x_sigmoid
    if clip is not None and clip > 0:
        xs_neg = (xs_neg + clip).clamp(max=1)
    loss = y * torch.log(xs_pos.clamp(min=eps)) + (1 - y) * torch.log(xs_neg.clamp(min=eps))
    pt = xs_pos * y + xs_neg * (1 - y)
    loss = loss * torch.pow(1 - pt, gamma_pos * y + gamma_neg * (1 - y)).detach()
    return -loss.sum()


@pytest.mark.parametrize("gamma_neg,gamma_pos,clip", [(4, 1, 0.05), (2, 0, 0.0), (0, 0, 0.0), (3, 3, 0.0)])
def test_values_and_gradients_match_the_formula(gamma_neg, gamma_pos, clip):
    torch.manual_seed(0)
    logits = (torch.randn(6, 7) * 3).requires_grad_()
    labels = (torch.rand(6, 7) < 0.3).float()
    labels[0, 1] = -1
    loss = AsymmetricLoss(gamma_neg, gamma_pos, clip, eps=1e-8)(logits, labels)
    (grad,) = torch.autograd.grad(loss, logits)

    reference_logits = logits.detach().double().requires_grad_()
    reference = formula_asl(reference_logits, labels, gamma_neg, gamma_pos, clip, 1e-8)
    (reference_grad,) = torch.autograd.grad(reference, reference_logits)
    torch.testing.assert_close(loss.double(), reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad.double(), reference_grad, rtol=1e-4, atol=1e-6)
    assert grad[0, 1] == 0  # the unknown entry gets no gradient


def test_sum_reduction_equals_the_authors_implementation():
    torch.manual_seed(1)
    logits, labels = torch.randn(8, 20) * 4, (torch.rand(8, 20) < 0.2).float()
    torch.testing.assert_close(AsymmetricLoss()(logits, labels), authors_asl(logits, labels))


def test_zero_gammas_and_clip_give_binary_cross_entropy():
    logits, labels = torch.randn(4, 9), (torch.rand(4, 9) < 0.5).float()
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels, reduction="sum")
    torch.testing.assert_close(AsymmetricLoss(0, 0, 0)(logits, labels), bce, rtol=1e-5, atol=1e-5)


def test_reductions_and_unknown_labels():
    logits = torch.randn(3, 4)
    labels = torch.tensor([[1, 0, -1, 0], [0, -1, -1, 1], [1, 1, 0, 0]])
    per_entry = AsymmetricLoss(reduction="none")(logits, labels)
    assert per_entry.shape == (3, 4)
    assert (per_entry[labels == -1] == 0).all()
    total = AsymmetricLoss(reduction="sum")(logits, labels)
    torch.testing.assert_close(total, per_entry.sum())
    torch.testing.assert_close(AsymmetricLoss(reduction="mean")(logits, labels), total / 9)


def test_focal_weight_without_gradient_differs_from_with_gradient():
    logits = torch.randn(4, 5, requires_grad=True)
    labels = (torch.rand(4, 5) < 0.5).float()
    (detached,) = torch.autograd.grad(AsymmetricLoss(disable_focal_grad=True)(logits, labels), logits)
    (full,) = torch.autograd.grad(AsymmetricLoss(disable_focal_grad=False)(logits, labels), logits)
    assert not torch.allclose(detached, full)


def test_never_turns_gradients_back_on_inside_no_grad():
    logits, labels = torch.randn(2, 3, requires_grad=True), torch.ones(2, 3)
    with torch.no_grad():
        loss = AsymmetricLoss()(logits, labels)
        assert not torch.is_grad_enabled()
    assert not loss.requires_grad


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_finite_under_autocast_for_extreme_logits(dtype):
    logits = torch.linspace(-100, 100, 40).reshape(4, 10).requires_grad_()
    labels = (torch.arange(40).reshape(4, 10) % 2).float()
    with torch.autocast("cpu", dtype=dtype):
        loss = AsymmetricLoss()(logits.to(dtype), labels)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="reduction"):
        AsymmetricLoss(reduction="avg")
    with pytest.raises(ValueError, match="clip"):
        AsymmetricLoss(clip=1.5)
    with pytest.raises(ValueError, match="same shape"):
        AsymmetricLoss()(torch.zeros(2, 3), torch.zeros(2, 4))
