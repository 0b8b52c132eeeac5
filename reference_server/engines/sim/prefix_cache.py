"""The simulator's prefix cache: a KV block cache over prompt tokens as vLLM keeps one, least recently used out first.

A prompt is cut into blocks of `block_size` tokens. A block's key hashes the key of the block before it with its own
tokens, so a block is found only behind the same tokens in the same order: a shared prefix. `admit` counts the
leading whole blocks already cached — never the block holding the prompt's last token, which an engine always
computes to sample the first output token (vLLM's rule) — then caches every whole block of the prompt as most
recently used; beyond `capacity` blocks the least recently used go. Only keys are kept: the simulator has no KV
tensors, only their timing (the engine skips the prefill cost of the cached tokens).

Differences from vLLM, on purpose: blocks in use by running requests can be evicted here (vLLM frees only idle ones),
and only prompt blocks are cached (vLLM also caches full blocks of generated tokens; a conversation re-sends the
answer inside its next prompt, where a chat template's rendering changes its first tokens anyway).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence


class PrefixCache:
    def __init__(self, block_size: int, capacity: int) -> None:
        if block_size < 1 or capacity < 1:
            raise ValueError("a prefix cache needs a block size and a capacity of at least 1")
        self.block_size = block_size
        self.capacity = capacity
        self.queried_tokens = 0  # prompt tokens looked up, and of them the ones found: the hit rate
        self.hit_tokens = 0
        self._blocks: OrderedDict[int, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._blocks)

    def admit(self, token_ids: Sequence[int]) -> int:
        """The prompt's tokens found in the cache (a multiple of the block size); its blocks are cached after."""
        size = self.block_size
        keys = []
        key = 0
        for start in range(0, len(token_ids) - size + 1, size):
            key = hash((key, tuple(token_ids[start : start + size])))
            keys.append(key)
        hits = 0
        blocks = self._blocks
        for key in keys[: max(0, len(token_ids) - 1) // size]:
            if key not in blocks:
                break
            hits += 1
        for key in keys:
            blocks[key] = None
            blocks.move_to_end(key)
        while len(blocks) > self.capacity:
            blocks.popitem(last=False)
        self.queried_tokens += len(token_ids)
        self.hit_tokens += hits * size
        return hits * size
