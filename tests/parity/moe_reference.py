"""A PyTorch mixture-of-experts layer, written as Mixtral's `MixtralSparseMoeBlock` runs it:
a linear router, softmax, the top k experts per token with their gate values renormalised,
SwiGLU experts, and dispatch (for each expert, the tokens routed to it are gathered, run
through its MLP, weighted and added back with `index_add_`). The parameters are stacked
along the expert axis under the names examples/moe.arch declares (router [expert, embed];
w1, w3 [expert, hidden, embed]; w2 [expert, embed, hidden]), so its `state_dict()` binds
that file as it is. Used by tests/parity/test_moe.py and benchmarks/moe.py.
"""
from __future__ import annotations

import torch
from torch import nn


class TorchMoE(nn.Module):
    def __init__(self, experts: int, k: int, embed: int, hidden: int, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)

        def weight(*shape):  # std 1/sqrt(fan-in): outputs of order one
            return nn.Parameter(torch.randn(*shape, generator=g) / shape[-1] ** 0.5)
        self.k = k
        self.router = weight(experts, embed)
        self.w1 = weight(experts, hidden, embed)
        self.w3 = weight(experts, hidden, embed)
        self.w2 = weight(experts, embed, hidden)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seq, embed = x.shape
        tokens = x.reshape(-1, embed)
        gate = torch.softmax(tokens @ self.router.T, dim=-1)
        weights, chosen = torch.topk(gate, self.k, dim=-1)
        weights = weights / weights.sum(dim=-1, keepdim=True)
        out = torch.zeros_like(tokens)
        for e in range(self.router.shape[0]):
            token, slot = torch.where(chosen == e)
            h = tokens[token]
            y = (nn.functional.silu(h @ self.w1[e].T) * (h @ self.w3[e].T)) @ self.w2[e].T
            out.index_add_(0, token, y * weights[token, slot, None])
        return out.reshape(batch, seq, embed)
