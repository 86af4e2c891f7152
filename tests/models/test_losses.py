"""Ranking and alignment losses."""

import torch

from graphtrain.models.losses import alignment_loss, bpr_loss


def test_bpr_is_log2_when_positive_and_negative_tie():
    assert torch.isclose(bpr_loss(torch.zeros(4), torch.zeros(4, 3)), torch.log(torch.tensor(2.0)))


def test_alignment_uses_masked_rows_and_moves_only_the_mapped_side():
    mapped = torch.tensor([[1.0, 0.0], [5.0, 5.0]], requires_grad=True)
    target = torch.tensor([[0.0, 0.0], [0.0, 0.0]], requires_grad=True)
    loss = alignment_loss(mapped, target, torch.tensor([True, False]))
    assert float(loss) == 1.0  # only row 0: ||(1, 0) - (0, 0)||^2
    loss.backward()
    assert torch.equal(mapped.grad, torch.tensor([[2.0, 0.0], [0.0, 0.0]]))
    assert target.grad is None  # the target side is held fixed


def test_alignment_without_overlapping_users_is_zero_and_keeps_the_graph():
    mapped = torch.ones(3, 2, requires_grad=True)
    loss = alignment_loss(mapped, torch.zeros(3, 2), torch.zeros(3, dtype=torch.bool))
    assert float(loss) == 0.0
    loss.backward()  # DDP needs the transfer head in the graph even when no row counts
    assert torch.equal(mapped.grad, torch.zeros(3, 2))
