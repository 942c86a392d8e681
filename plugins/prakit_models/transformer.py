"""Decoder-only causal transformer over pixel tokens, with a KV cache for one-token decoding."""

from __future__ import annotations

import functools
import os
from typing import ClassVar

import attrs
import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from attrs.validators import gt, in_
from torch import nn

from prakit.plugin_api import Backbone, BackboneConfig, PrakitError


@attrs.frozen
class TransformerConfig(BackboneConfig):
    """Pre-norm GPT; the class embedding is the start token (the last row is the null class).

    ``positions``: ``learned`` embeddings added to the inputs, or ``rope2d``, axial rotary embeddings
    of the (row, column) grid cells on queries and keys (see :class:`Rope2d`; base ``rope_theta``).
    """

    name: ClassVar[str] = "transformer"
    width: int = attrs.field(default=768, validator=gt(0))
    depth: int = attrs.field(default=12, validator=gt(0))
    heads: int = attrs.field(default=12, validator=gt(0))
    mlp_ratio: float = attrs.field(default=4.0, validator=gt(0.0))
    positions: str = attrs.field(default="learned", validator=in_(("learned", "rope2d")))
    rope_theta: float = attrs.field(default=10000.0, validator=gt(1.0))
    qkv_bias: bool = True

    @heads.validator
    def _check_heads(self, attribute, value):
        if self.width % value:
            raise ValueError(f"'heads' must divide width ({self.width}): {value}")

    @positions.validator
    def _check_positions(self, attribute, value):
        if value == "rope2d" and (self.width // self.heads) % 4:
            raise ValueError(f"rope2d needs a head dimension divisible by 4, got {self.width // self.heads}")


#: The environment variable that picks the causal attention kernel on CUDA: ``auto`` (xformers
#: when it imports, else SDPA), ``sdpa`` or ``xformers`` (an error when it does not import).
ATTENTION_KERNEL = "PRAKIT_ATTENTION"


def xformers_causal_attention():
    """xformers' causal attention over (B, T, heads, head_dim), or None for SDPA, as $PRAKIT_ATTENTION chooses."""
    choice = os.environ.get(ATTENTION_KERNEL, "auto")
    if choice not in ("auto", "sdpa", "xformers"):
        raise PrakitError(f"{ATTENTION_KERNEL}={choice!r}: set it to auto, sdpa or xformers")
    if choice == "sdpa" or choice == "auto" and not torch.cuda.is_available():
        return None
    try:
        import xformers.ops
    except Exception as error:  # absent, or built for another torch / CUDA
        if choice == "xformers":
            raise PrakitError(f"{ATTENTION_KERNEL}=xformers, but xformers does not import ({error}): "
                              "pip install 'prakit[gpu]', or unset it for SDPA") from None
        return None
    return functools.partial(xformers.ops.memory_efficient_attention, attn_bias=xformers.ops.LowerTriangularMask())


def causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, xformers=None) -> torch.Tensor:
    """Causal attention over (B, T, heads, head_dim) tensors: ``xformers``
    (:func:`xformers_causal_attention`) on CUDA tensors, else SDPA."""
    if xformers is not None and q.is_cuda:
        try:
            return xformers(q, k, v)
        except NotImplementedError:  # no xformers kernel for these inputs (dtype, head dim, build)
            pass
    q, k, v = (t.transpose(1, 2) for t in (q, k, v))
    return F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2)


class KVCache:
    """Per-layer keys and values preallocated to ``seq_len`` positions, heads first (B, heads,
    seq_len, head_dim). ``pos`` counts the positions filled; ``position`` holds the same count as a
    tensor, which is all a decoding step reads: it writes there and attends over every position
    with those not yet filled masked, so each step has the same shapes (one graph for
    torch.compile and CUDA graphs). A prefill writes several positions at once."""

    def __init__(self, seq_len: int, device: torch.device):
        self.seq_len = seq_len
        self.keys: list[torch.Tensor] = []
        self.values: list[torch.Tensor] = []
        self.pos = 0
        self.position = torch.zeros(1, dtype=torch.long, device=device)

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write ``k, v`` (B, T, heads, head_dim) of the T positions from the current one; return
        all keys and values (B, heads, seq_len, head_dim), zero where not yet filled."""
        if layer == len(self.keys):  # first position: allocate with the dtype autocast produced
            self.keys.append(k.new_zeros(k.shape[0], k.shape[2], self.seq_len, k.shape[3]))
            self.values.append(v.new_zeros(v.shape[0], v.shape[2], self.seq_len, v.shape[3]))
        positions = self.positions(k.shape[1])
        self.keys[layer].index_copy_(2, positions, k.transpose(1, 2))
        self.values[layer].index_copy_(2, positions, v.transpose(1, 2))
        return self.keys[layer], self.values[layer]

    def positions(self, count: int) -> torch.Tensor:
        """The ``count`` positions from the current one."""
        return self.position + torch.arange(count, device=self.position.device)

    def filled(self, count: int = 1) -> torch.Tensor:
        """The causal attention mask (1, 1, count, seq_len) of ``count`` new positions: each sees
        the positions filled before it and itself."""
        slots = torch.arange(self.seq_len, device=self.position.device)
        return (slots <= self.positions(count)[:, None]).view(1, 1, count, -1)

    def advance(self, count: int = 1) -> None:
        """Move on past ``count`` positions, once every layer has written them."""
        self.pos += count
        self.position += count


class Rope2d(nn.Module):
    """Axial 2D rotary position embedding over a (rows, cols) grid of raster-order tokens.

    Rotation pairs (j, j + head_dim/2) turn by angle_j; the first head_dim/4 angles are row
    frequencies, the rest column frequencies (theta^(-k / (head_dim/4)) each). Raster cell i is
    grid cell (i // cols, i % cols). At sequence index s the query sits at the cell of the token
    h_s predicts (s) and the key at the cell of the token read there (s - 1; the start token at
    cell -1 = (-1, cols - 1)), so q.k depends only on the 2D offset from the read token to the
    predicted one (the pixel above is always (1, 0)).
    """

    def __init__(self, head_dim: int, grid: tuple[int, int], theta: float):
        super().__init__()
        rows, cols = grid
        bands = head_dim // 4
        freqs = theta ** (-torch.arange(bands, dtype=torch.float64) / bands)
        cells = torch.arange(-1, rows * cols)  # table row j holds raster cell j - 1
        row, col = cells.div(cols, rounding_mode="floor"), cells % cols
        angles = torch.cat([torch.outer(row, freqs), torch.outer(col, freqs)], dim=1)  # (L + 1, head_dim/2)
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, start: int | torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotate (B, T, heads, head_dim) queries and keys of sequence indices start .. start + T - 1
        (``start`` a number, or a tensor of one)."""
        return self._rotate(q, start + 1), self._rotate(k, start)

    def _rotate(self, x: torch.Tensor, row: int | torch.Tensor) -> torch.Tensor:
        rows = row + torch.arange(x.shape[1], device=x.device)
        cos, sin = (table[rows, None] for table in (self.cos, self.sin))
        x1, x2 = x.float().chunk(2, dim=-1)
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).to(x.dtype)


class CausalSelfAttention(nn.Module):
    def __init__(self, width: int, heads: int, qkv_bias: bool, xformers=None):
        super().__init__()
        self.heads = heads
        self.xformers = xformers  # a constant to torch.compile
        self.qkv = nn.Linear(width, 3 * width, bias=qkv_bias)
        self.proj = nn.Linear(width, width)

    def forward(
        self, x: torch.Tensor, rope: Rope2d | None, cache: KVCache | None, layer: int
    ) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, C // self.heads).unbind(2)
        if rope is not None:  # keys are cached rotated; the new query turns to its own position
            q, k = rope(q, k, 0 if cache is None else cache.position)
        if cache is None:
            out = causal_attention(q, k, v, self.xformers)
        else:  # new positions attend to every filled one (SDPA: no kernel beats it for one query)
            k, v = cache.update(layer, k, v)
            out = F.scaled_dot_product_attention(q.transpose(1, 2), k, v, attn_mask=cache.filled(T)).transpose(1, 2)
        return self.proj(out.reshape(B, T, C))


class Block(nn.Module):
    def __init__(self, cfg: TransformerConfig, xformers=None):
        super().__init__()
        hidden = int(cfg.width * cfg.mlp_ratio)
        self.norm1 = nn.LayerNorm(cfg.width)
        self.attn = CausalSelfAttention(cfg.width, cfg.heads, cfg.qkv_bias, xformers)
        self.norm2 = nn.LayerNorm(cfg.width)
        self.mlp = nn.Sequential(nn.Linear(cfg.width, hidden), nn.GELU(), nn.Linear(hidden, cfg.width))

    def forward(
        self, x: torch.Tensor, rope: Rope2d | None, cache: KVCache | None, layer: int
    ) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), rope, cache, layer)
        return x + self.mlp(self.norm2(x))


class Transformer(Backbone):
    """Pre-norm causal transformer (GPT/DiT style), class start token, learned/2D-RoPE positions, KV cache."""

    def __init__(
        self, cfg: TransformerConfig, *, token_dim: int, seq_len: int, num_classes: int, grid: tuple[int, int]
    ):
        super().__init__()
        if grid[0] * grid[1] != seq_len:
            raise ValueError(f"a {grid[0]}x{grid[1]} grid does not hold seq_len = {seq_len} tokens")
        self.cfg = cfg
        self.width, self.depth, self.token_dim = cfg.width, cfg.depth, token_dim
        self.seq_len, self.num_classes = seq_len, num_classes
        self.patch_embed = nn.Linear(token_dim, cfg.width)
        self.class_embed = nn.Embedding(num_classes + 1, cfg.width)  # row num_classes: the null class
        learned = cfg.positions == "learned"
        self.pos_embed = nn.Parameter(torch.zeros(seq_len, cfg.width)) if learned else None
        self.rope = None if learned else Rope2d(cfg.width // cfg.heads, grid, cfg.rope_theta)
        xformers = xformers_causal_attention()
        self.blocks = nn.ModuleList(Block(cfg, xformers) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.width)
        self.checkpointing = False
        self.apply(_init_weights)
        if learned:
            nn.init.normal_(self.pos_embed, std=0.02)

    def forward(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.norm(self._blocks(self._embed(tokens, labels)))

    def hidden_states(self, tokens: torch.Tensor, labels: torch.Tensor, layer: int) -> torch.Tensor:
        """The residual stream after block ``layer`` (1..depth); the last one is also normalised, as ``forward``'s."""
        if not 1 <= layer <= self.depth:
            raise ValueError(f"layer must be in 1..{self.depth}, got {layer}")
        h = self._blocks(self._embed(tokens, labels), stop=layer)
        return self.norm(h) if layer == self.depth else h

    def _embed(self, tokens: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        T = tokens.shape[1]
        if T >= self.seq_len:
            raise ValueError(f"at most seq_len - 1 = {self.seq_len - 1} tokens can be read, got {T}")
        x = torch.cat([self.class_embed(labels)[:, None], self.patch_embed(tokens)], dim=1)
        return self._add_positions(x, 0)

    def start(self, labels: torch.Tensor) -> tuple[torch.Tensor, KVCache]:
        """Read the start token: ``h`` of position 0 (B, width) and a fresh cache holding it."""
        cache = KVCache(self.seq_len, labels.device)
        x = self._add_positions(self.class_embed(labels)[:, None], 0)
        h = self.norm(self._blocks(x, cache))[:, 0]
        cache.advance()
        return h, cache

    def step(self, token: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Read the next token (B, token_dim) after those in ``cache``; return its ``h`` (B, width)."""
        if cache.pos >= self.seq_len:
            raise ValueError(f"the cache is full: all {self.seq_len} positions have been read")
        h = self.decode(token, cache)
        cache.advance()
        return h

    def prefill(self, tokens: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Read ``tokens`` (B, T, token_dim) after those in ``cache`` in one parallel pass; return
        the last one's ``h`` (B, width)."""
        if cache.pos + tokens.shape[1] > self.seq_len:
            raise ValueError(f"the cache holds {self.seq_len} positions: {cache.pos} are read, "
                             f"{tokens.shape[1]} more do not fit")
        x = self._add_positions(self.patch_embed(tokens), cache.position)
        h = self.norm(self._blocks(x, cache))[:, -1]
        cache.advance(tokens.shape[1])
        return h

    def decode(self, token: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """``h`` (B, width) of ``token`` (B, token_dim) read at the cache's position, whose keys and
        values it writes: the decoding step, the same graph at every position."""
        x = self._add_positions(self.patch_embed(token)[:, None], cache.position)
        return self.norm(self._blocks(x, cache))[:, 0]

    def compile_decoding(self, mode: str) -> None:
        self.decode = torch.compile(self.decode, mode=mode, dynamic=False)

    def _add_positions(self, x: torch.Tensor, start: int | torch.Tensor) -> torch.Tensor:
        """Learned embeddings of sequence indices start .. (``start`` a number, or a tensor of one;
        rope2d instead rotates queries and keys)."""
        if self.pos_embed is None:
            return x
        return x + self.pos_embed[start + torch.arange(x.shape[1], device=x.device)]

    def enable_activation_checkpointing(self) -> None:
        self.checkpointing = True

    def _blocks(self, x: torch.Tensor, cache: KVCache | None = None, stop: int | None = None) -> torch.Tensor:
        """The residual stream after the first ``stop`` blocks (all by default)."""
        recompute = self.checkpointing and cache is None and torch.is_grad_enabled()
        for layer, block in enumerate(self.blocks[:stop]):
            if recompute:
                x = torch.utils.checkpoint.checkpoint(block, x, self.rope, None, layer, use_reentrant=False)
            else:
                x = block(x, self.rope, cache, layer)
        return x


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        nn.init.normal_(module.weight, std=0.02)
    if isinstance(module, nn.Linear) and module.bias is not None:
        nn.init.zeros_(module.bias)
