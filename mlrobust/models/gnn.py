"""The label graph network of Durand, Mehrasa & Mori, CVPR 2019 (appendix A.1)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["LabelGNN"]


class LabelGNN(nn.Module):
    """The label graph network of Durand et al. 2019, appendix A.1, Algorithm 2.

    One node per class on a fully connected graph. With x the ConvNet's logits (B, C):

    * h_v^0 = [0, ..., x_v, ..., 0] — node v's state is x_v at position v (Eq. 12), so the
      hidden size equals the number of classes C;
    * m_v^t = mean over u != v of f_M(h_u^t), with f_M a fully connected layer + ReLU (Eq. 13);
    * h_v^{t+1} = GRU(h_v^t, m_v^t), one GRU cell shared by all nodes (Eq. 14), T = 3 steps;
    * output from the first and last states, h_v^0 + h_v^T (Eq. 15).

    Read-out (the paper leaves it open): Eq. 15 gives a C-vector per node, but class v needs
    one score. We read node v's score at position v, (h_v^0 + h_v^T)[v] = x_v + h_v^T[v],
    the same position its input was written to: the GNN then starts near the identity plus
    a learned residual, and needs no extra parameters.

    Cost: O(B C^3) per step for the shared layers (C = 80: negligible beside the backbone).
    """

    def __init__(self, num_classes: int, steps: int = 3) -> None:
        super().__init__()
        if num_classes < 2:
            raise ValueError(f"a label graph needs at least 2 classes, got {num_classes}")
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.num_classes, self.steps = num_classes, steps
        self.message = nn.Linear(num_classes, num_classes)  # f_M (Eq. 13), followed by ReLU
        self.update = nn.GRUCell(num_classes, num_classes)  # F (Eq. 14)

    def forward(self, x: Tensor) -> Tensor:
        b, c = x.shape
        h0 = torch.diag_embed(x)  # (B, C nodes, C hidden): Eq. 12
        h = h0
        for _ in range(self.steps):
            f = torch.relu(self.message(h))  # f_M of every node
            m = (f.sum(dim=1, keepdim=True) - f) / (c - 1)  # mean over the other nodes
            h = self.update(m.reshape(b * c, c), h.reshape(b * c, c)).reshape(b, c, c)
        return (h0 + h).diagonal(dim1=1, dim2=2)  # node v read at position v
