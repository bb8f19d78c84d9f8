"""The token decoder's attention: timm's softmax attention, or linear attention (Dinomaly's).

Linear attention (Katharopoulos et al., "Transformers are RNNs", ICML 2020; used in Dinomaly's decoder, Guo et al.,
CVPR 2025, so that the decoder cannot focus on the one token it should not copy) replaces softmax(q k^T) v with
phi(q) (phi(k)^T v), normalised by phi(q) sum_j phi(k_j), with phi(x) = elu(x) + 1: its cost grows with the number of
tokens, not their square, and it keeps timm's ``Attention`` weights and names (qkv, proj), so a checkpoint holds the
same tensors under either.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from timm.models.vision_transformer import Attention, Block

from anovit.config import TOKEN_ATTENTIONS

EPS = 1e-6  # keeps the normaliser of a query off zero


class LinearAttention(Attention):
    """timm's ``Attention`` with the kernel form above in place of softmax: (B, N, C) -> (B, N, C)."""

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None, **_: object) -> torch.Tensor:
        if attn_mask is not None:
            raise ValueError("linear attention takes no attention mask")
        b, n, _c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # each (B, heads, N, head_dim)
        q, k = F.elu(self.q_norm(q)) + 1.0, F.elu(self.k_norm(k)) + 1.0
        kv = k.transpose(-2, -1) @ v  # (B, heads, head_dim, head_dim)
        norm = q @ k.sum(dim=-2, keepdim=True).transpose(-2, -1)  # (B, heads, N, 1)
        out = (q @ kv) / (norm + EPS)  # (B, heads, N, head_dim)
        out = self.norm(out.transpose(1, 2).reshape(b, n, -1))  # (B, N, C)
        gate = getattr(self, "gate", None)  # newer timm: an optional output gate, None by default
        if gate is not None:
            out = out * gate(x).sigmoid()
        return self.proj_drop(self.proj(out))


def decoder_block(dim: int, heads: int, attention: str) -> Block:
    """A transformer block of the token decoder (timm's ``Block``, MLP ratio 4) with ``attention``."""
    if attention not in TOKEN_ATTENTIONS:
        raise ValueError(f"token attention {attention!r}: expected one of {', '.join(TOKEN_ATTENTIONS)}")
    block = Block(dim, num_heads=heads, mlp_ratio=4.0, qkv_bias=True)
    if attention == "linear":
        # the block's own initial weights under the kernel form, built without drawing from the random stream: a seed
        # gives the decoder the same initial weights with either attention
        with torch.random.fork_rng(devices=[]):
            linear = LinearAttention(dim, num_heads=heads, qkv_bias=True)
        linear.load_state_dict(block.attn.state_dict())
        block.attn = linear
    return block
