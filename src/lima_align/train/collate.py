"""Turning rendered examples into micro-batches: padding-free packing or padded batches.

Which one a run uses is ``TrainConfig.batching`` (``resolved_batching``): packed with FlashAttention-2, otherwise
padded micro-batches whose examples the rebalance sampler has already grouped by length.

Packing (``batching: packed``): the examples of a micro-batch are concatenated into ONE row, ``position_ids`` restart
at 0 for each example and there is no attention mask. transformers then builds a block-diagonal causal mask from
the restarting positions (sdpa / eager, e.g. on CPU), or runs FlashAttention varlen kernels when the model uses
``flash_attention_2`` (pass ``flash_kwargs=True`` to also send ``cu_seq_lens``). Nothing is padded, and each
example sees only itself, so the loss equals the padded path's (tested). The first label of every example is
-100, so no example learns to predict the next one's first token.

The padded path pads with the pad token; padded positions get label -100 whatever the pad id is (so an EOS or
EOT used as padding is never masked out of the labels).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
from transformers import DataCollatorWithFlattening

IGNORE = -100


@dataclass
class PaddedCollator:
    """Right-pad a list of ``{"input_ids", "labels"}`` features to the longest one."""

    pad_token_id: int

    def __call__(self, features: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(f["input_ids"]) for f in features)
        ids = torch.full((len(features), width), self.pad_token_id, dtype=torch.long)
        labels = torch.full((len(features), width), IGNORE, dtype=torch.long)
        mask = torch.zeros((len(features), width), dtype=torch.long)
        for row, f in enumerate(features):
            n = len(f["input_ids"])
            ids[row, :n] = torch.as_tensor(f["input_ids"])
            labels[row, :n] = torch.as_tensor(f["labels"])
            mask[row, :n] = 1
        return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def make_collator(packing: bool, pad_token_id: int, flash_kwargs: bool = False) -> Any:
    """The collator for a run: transformers' flattening collator (packing) or :class:`PaddedCollator`."""
    if packing:
        return DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE,
                                          return_flash_attn_kwargs=flash_kwargs)
    return PaddedCollator(pad_token_id)


def padding_share(lengths: Sequence[int], micro_batch_size: int) -> float:
    """Share of padding tokens if these lengths were padded in consecutive micro-batches (0 when packing)."""
    total = padded = 0
    for start in range(0, len(lengths), micro_batch_size):
        group = lengths[start:start + micro_batch_size]
        total += sum(group)
        padded += max(group) * len(group)
    return 1.0 - total / padded if padded else 0.0
