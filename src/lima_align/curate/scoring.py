"""Model scores of candidate examples for the scored selection strategies (:mod:`lima_align.curate.scored`).

**IFD** (instruction-following difficulty; Li et al. 2024 "Cherry", Superfiltering): for a conversation with
response tokens ``R`` and context ``C``::

    IFD = loss(R | C) / loss(R)

where ``loss(R | C)`` is the scorer's mean negative log-likelihood (nats per token) of the response tokens after
the prompt, and ``loss(R)`` the mean over THE SAME token ids with no prompt (how the first one is handled:
below). IFD < 1: the prompt
helps the scorer predict the answer; IFD near 1: the answer is predictable without it (or the prompt adds
nothing); IFD > 1: the prompt makes the answer LESS likely (a mismatched pair: Cherry drops these).

The context is the scorer's own chat template when its tokenizer has one (an instruct scorer such as
``smollm2-135m-instruct``), else a plain ``User: ... / Assistant: ...`` layout (a base scorer). Every assistant
turn is a response segment, so a multi-turn chain is scored on all its answers. The text is split into
context and response segments that are tokenized separately, so the response ids are identical in both
passes. A sequence starts with the start token the tokenizer itself puts before a text (Gemma's ``<bos>``,
Llama's ``<|begin_of_text|>``; a template that writes it keeps one); a tokenizer that puts none (SmolLM2, whose
``bos_token`` is the chat role opener ``<|im_start|>``; GPT-2) gets none, and then the response's first token,
which nothing predicts in the response-alone pass, is scored in neither pass: both losses are over the same
tokens. In the plain layout the space after ``Assistant:`` belongs to the response, so the response is tokenized
as it reads in the whole text (a lone space token is rare in any tokenizer's training data).

A conversation longer than ``max_tokens`` is cut to fit: when its first response would start past half of
``max_tokens``, the prompt loses its beginning (the start token and the prompt's last ``max_tokens // 2`` tokens
stay: the end of a question is what the answer follows), then the conversation is cut from the end. So a long
question is scored on its answer instead of being refused, and every row gets at least half the budget for
response tokens (on LIMA's 1,022 training rows with the 135M scorer: 31 would have no response token in 256
and 139 fewer than 128 if cut from the end only).

Scores are cached in SQLite (:class:`ScoreCache`) under a key of (scorer identity, method version,
``max_tokens``, the conversation's turns): a re-mix, another strategy, or another arm of an ablation reuses them.
They are written every ``chunk`` conversations, so an interrupted run keeps what it finished. The scorer
identity is its name plus, for a local folder (a built-in is built into one first), the digest of its config,
weights, tokenizer and chat template, and the dtype it scores in, so a changed model is a new key.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from lima_align.conversation import Example

IFD_METHOD = "ifd-v3"  # bump when the computation changes: it is part of every cache key
PLAIN_USER, PLAIN_ASSISTANT = "User: ", "\n\nAssistant:"  # the space after it starts the response
IDENTITY_SUFFIXES = (".json", ".safetensors", ".bin", ".jinja", ".model", ".txt", ".tiktoken")
IFD_KEEP = ("high", "low")
RATING_ASPECTS = ("quality", "complexity")


@dataclass
class ScoringConfig:
    """How the scored strategies score candidates (the ``scoring`` section of a mix recipe)."""

    scorer: str = "smollm2-135m-instruct"  # IFD scorer: a built-in name, a hub id or a checkpoint folder
    max_tokens: int = 256  # tokens of one conversation scored (how it is cut: above; CPU cost: the README)
    batch_tokens: int = 4096  # padded tokens per forward pass (logits: batch_tokens x vocabulary floats)
    device: str | None = None  # None: cuda when available
    ifd_max: float | None = 1.0  # refuse IFD above this (Cherry drops IFD > 1); None keeps every value
    ifd_keep: str = "high"  # high: the n hardest rows under ifd_max (Cherry, Superfiltering); low: the n easiest
    judge: str = ""  # quality / complexity / deita: a judge YAML (configs/judges/*.yaml)
    judge_settings: dict[str, Any] = field(default_factory=dict)  # JudgeConfig keys over the file's
    quality_min: float = 0.0  # refuse rows rated below this (1-6); 0: top-n only
    complexity_min: float = 0.0
    deita_max_similarity: float = 0.9  # deita: refuse a row this close (cosine) to one already taken
    cache_dir: str = ".lima-score-cache"  # IFD scores and judge calls, reused across mixes

    def __post_init__(self) -> None:
        if self.ifd_keep not in IFD_KEEP:
            raise ValueError(f"scoring.ifd_keep must be one of {IFD_KEEP}, got {self.ifd_keep!r}")
        if self.max_tokens < 2 or self.batch_tokens < self.max_tokens:
            raise ValueError("scoring.max_tokens must be >= 2 and batch_tokens >= max_tokens")
        if not 0.0 < self.deita_max_similarity <= 1.0:
            raise ValueError(f"scoring.deita_max_similarity must be in (0, 1], got {self.deita_max_similarity}")


@dataclass(frozen=True)
class IFDScore:
    loss_given_prompt: float
    loss_alone: float
    tokens: int  # response tokens scored (0: nothing left to score; IFD is NaN)

    @property
    def ifd(self) -> float:
        if not self.tokens or self.loss_alone <= 0:
            return math.nan
        return self.loss_given_prompt / self.loss_alone

    def to_dict(self) -> dict[str, Any]:
        return {"ifd": round(self.ifd, 6), "loss_given_prompt": round(self.loss_given_prompt, 6),
                "loss_alone": round(self.loss_alone, 6), "tokens": self.tokens}


def model_identity(name: str) -> dict[str, str]:
    """The scorer's name and, when it is a local folder (a built-in is built into one first), a digest of its
    config, weights, tokenizer and chat template."""
    from lima_align.models import BUILTINS, materialise_builtin

    folder = materialise_builtin(name) if name in BUILTINS else Path(name).expanduser()
    if not folder.is_dir():
        return {"name": name}  # a hub id: its name (pin a revision in the folder you pass to freeze it)
    from lima_align.fileio import file_digest

    files = sorted(p for p in folder.iterdir() if p.suffix in IDENTITY_SUFFIXES
                   and p.name != "lima-align-builtin.json")
    h = hashlib.sha256("".join(f"{p.name}:{file_digest(p)}\n" for p in files).encode()).hexdigest()[:16]
    return {"name": name, "digest": h}


def conversation_key(turns: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps(list(turns), ensure_ascii=False).encode()).hexdigest()


class ScoreCache:
    """``get(key)`` / ``put_many({key: value})`` of JSON values in one SQLite table; each batch one transaction."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(self.path), isolation_level=None, timeout=60)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS scores (key TEXT PRIMARY KEY, value TEXT NOT NULL, "
                         "created REAL NOT NULL)")

    def get_many(self, keys: Sequence[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for i in range(0, len(keys), 500):
            part = list(keys[i:i + 500])
            q = f"SELECT key, value FROM scores WHERE key IN ({','.join('?' * len(part))})"
            out.update((k, json.loads(v)) for k, v in self._db.execute(q, part))
        return out

    def put_many(self, values: dict[str, Any]) -> None:
        now = time.time()
        self._db.execute("BEGIN")
        self._db.executemany("INSERT OR REPLACE INTO scores (key, value, created) VALUES (?, ?, ?)",
                             [(k, json.dumps(v), now) for k, v in values.items()])
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()


# ------------------------------------------------------------------------------------------ IFD
def segments(turns: Sequence[str], tokenizer: Any) -> list[tuple[str, bool]]:
    """The conversation as (text, is_response) segments whose concatenation is what the scorer reads."""
    template = getattr(tokenizer, "chat_template", None)
    if template:
        messages = [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]
        text = tokenizer.apply_chat_template(messages, tokenize=False)
        out, pos = [], 0
        for i in range(1, len(turns), 2):
            if not turns[i]:
                continue  # an empty answer: nothing to score, and the template goes on
            asked = text.find(turns[i - 1], pos)
            at = text.find(turns[i], asked + len(turns[i - 1])) if asked >= 0 else -1
            if at < 0:
                break  # the template rewrites a turn (strips it...): use the plain layout
            out += [(text[pos:at], False), (turns[i], True)]
            pos = at + len(turns[i])
        else:
            return out + ([(text[pos:], False)] if pos < len(text) else [])
    out, prompt = [], ""  # the plain layout: the text between two answers is one prompt segment
    for i, turn in enumerate(turns):
        if i % 2 == 0:
            prompt += ("\n\n" if i else "") + PLAIN_USER + turn
        elif turn:
            out += [(prompt + PLAIN_ASSISTANT, False), (" " + turn, True)]
            prompt = ""
        else:
            prompt += PLAIN_ASSISTANT + " "  # an empty answer: nothing to score
    return out + ([(prompt, False)] if prompt else [])


def encode(turns: Sequence[str], tokenizer: Any, max_tokens: int) -> tuple[list[int], list[bool], int | None]:
    """(ids, is_response per id, start id or None) of the conversation, cut to ``max_tokens`` (the start id
    included): the prompt's head first when the first response starts past ``max_tokens // 2``, then the end."""
    from lima_align.chat_format import bos_prefix

    ids: list[int] = []
    mask: list[bool] = []
    for text, is_response in segments(turns, tokenizer):
        piece = tokenizer(text, add_special_tokens=False)["input_ids"] if text else []
        ids += piece
        mask += [is_response] * len(piece)
    head = bos_prefix(tokenizer)
    if head and ids[:1] != head:
        ids, mask = head + ids, [False] + mask
    keep = len(head)  # the start token survives the cut
    first = mask.index(True) if True in mask else len(mask)
    if len(ids) > max_tokens and first > max_tokens // 2:
        drop = first - max_tokens // 2
        ids, mask = ids[:keep] + ids[keep + drop:], mask[:keep] + mask[keep + drop:]
    return ids[:max_tokens], mask[:max_tokens], (head[0] if head else None)


def scoring_device(device: str | None) -> tuple[str, str]:
    """(device, dtype name) the scorer runs in: cuda when available, float32 on CPU, bfloat16 on an accelerator."""
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return device, "float32" if device == "cpu" else "bfloat16"


class IFDScorer:
    """Batched IFD with a causal LM; ``score(conversations)`` -> one :class:`IFDScore` each."""

    def __init__(self, model: Any, tokenizer: Any, max_tokens: int = 256, batch_tokens: int = 4096):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.max_tokens, self.batch_tokens = max_tokens, batch_tokens

    @classmethod
    def load(cls, name: str, max_tokens: int = 256, batch_tokens: int = 4096, device: str | None = None,
             ) -> "IFDScorer":
        import torch

        from lima_align.models import load_model, load_tokenizer

        device, dtype = scoring_device(device)
        model = load_model(name, dtype=getattr(torch, dtype)).to(device)
        return cls(model, load_tokenizer(name), max_tokens, batch_tokens)

    def score(self, conversations: Sequence[Sequence[str]],
              progress: Callable[[int, int], None] | None = None) -> list[IFDScore]:
        rows = []  # (index, conditional ids, scored positions, alone ids)
        for i, turns in enumerate(conversations):
            ids, mask, start = encode(turns, self.tokenizer, self.max_tokens)
            response = [t for t, m in zip(ids, mask) if m]
            if start is None and response:  # nothing predicts the first response token alone: scored in neither
                mask[mask.index(True)] = False
            rows.append((i, ids, mask, ([start] if start is not None else []) + response))
        losses: dict[tuple[int, str], float] = {}
        scorable = [r for r in rows if len(r[3]) > 1]  # an alone pass of one token scores nothing: NaN
        seqs = [(i, "cond", ids, mask) for i, ids, mask, _ in scorable]
        seqs += [(i, "alone", alone, [False] + [True] * (len(alone) - 1)) for i, _, _, alone in scorable]
        seqs.sort(key=lambda s: -len(s[2]))
        done = 0
        for batch in self._batches(seqs):
            for (i, kind, _, _), loss in zip(batch, self._mean_losses(batch)):
                losses[(i, kind)] = loss
            done += len(batch)
            if progress is not None:
                progress(done // 2, len(rows))
        nan = math.nan
        return [IFDScore(losses.get((i, "cond"), nan), losses.get((i, "alone"), nan), max(len(alone) - 1, 0))
                for i, _, _, alone in rows]

    def _batches(self, seqs: list) -> list[list]:
        out, cur = [], []
        for s in seqs:  # longest first: a batch's padded size is its first row's length times its rows
            if cur and len(cur[0][2]) * (len(cur) + 1) > self.batch_tokens:
                out.append(cur)
                cur = []
            cur.append(s)
        return out + ([cur] if cur else [])

    def _mean_losses(self, batch: list) -> list[float]:
        """Mean NLL of the marked tokens of each sequence (right-padded, one forward pass)."""
        import torch

        device = next(self.model.parameters()).device
        width = max(len(s[2]) for s in batch)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        attn = torch.zeros((len(batch), width), dtype=torch.long)
        marked = torch.zeros((len(batch), width), dtype=torch.bool)
        for r, (_, _, seq, mask) in enumerate(batch):
            ids[r, :len(seq)] = torch.tensor(seq)
            attn[r, :len(seq)] = 1
            marked[r, :len(seq)] = torch.tensor(mask)
        keep = marked[:, 1:].to(device)  # position t predicts token t + 1
        targets = ids[:, 1:].to(device)[keep]
        with torch.inference_mode():
            hidden = self._hidden(ids.to(device), attn.to(device))
            if hidden is None:  # a model whose logits are not head(hidden): every position's logits
                logits = self.model(input_ids=ids.to(device), attention_mask=attn.to(device)).logits
                picked = logits[:, :-1][keep].float()
            else:  # the head on the scored positions only (a fifth of a small model's compute is its head)
                picked = self.model.get_output_embeddings()(hidden[:, :-1][keep]).float()
            nll = torch.nn.functional.cross_entropy(picked, targets, reduction="none")
        rows = keep.nonzero()[:, 0]
        sums = torch.zeros(len(batch), dtype=torch.float64, device=device).index_add_(0, rows, nll.double())
        counts = keep.sum(1)
        return [float(s / c) if c else math.nan for s, c in zip(sums.tolist(), counts.tolist())]

    def _hidden(self, ids: Any, attn: Any) -> Any:
        """The decoder's last hidden states when the logits are just the output head applied to them."""
        config = getattr(self.model, "config", None)
        if getattr(config, "final_logit_softcapping", None) or self.model.get_output_embeddings() is None:
            return None
        decoder = getattr(self.model, "get_decoder", lambda: None)()
        if decoder is None:
            return None
        return decoder(input_ids=ids, attention_mask=attn).last_hidden_state


def ifd_scores(examples: Sequence[Example], cfg: ScoringConfig, scorer: Callable[[], IFDScorer],
               log: Callable[[str], None] = lambda m: None, chunk: int = 512) -> list[IFDScore]:
    """IFD of each example, from the cache where it has them; ``scorer()`` is called only if some are missing.
    The missing ones are scored ``chunk`` at a time, each chunk cached as it finishes."""
    ident = ifd_identity(cfg)
    keys = [hashlib.sha256(json.dumps([ident, IFD_METHOD, cfg.max_tokens, conversation_key(ex.conversations)])
                           .encode()).hexdigest() for ex in examples]
    cache = ScoreCache(Path(cfg.cache_dir) / "ifd.sqlite")
    try:
        found = cache.get_many(keys)
        todo = sorted({k: i for i, k in enumerate(keys) if k not in found}.values())
        if todo:
            log(f"IFD: scoring {len(todo)} of {len(examples)} candidates with {cfg.scorer} "
                f"({len(examples) - len(todo)} cached)")
            t0 = time.perf_counter()
            for at in range(0, len(todo), chunk):
                part = todo[at:at + chunk]
                new = {keys[i]: [s.loss_given_prompt, s.loss_alone, s.tokens]
                       for i, s in zip(part, scorer().score([examples[i].conversations for i in part]))}
                cache.put_many(new)
                found.update(new)
                if len(todo) > chunk:
                    log(f"IFD: {at + len(part)} of {len(todo)} scored ({time.perf_counter() - t0:.0f} s)")
            log(f"IFD: {len(todo)} scored in {time.perf_counter() - t0:.1f} s")
        return [IFDScore(*found[k]) for k in keys]
    finally:
        cache.close()


def ifd_identity(cfg: ScoringConfig) -> dict[str, str]:
    """The IFD scorer as the cache and the mix key see it: its model identity and the dtype it scores in."""
    return {**model_identity(cfg.scorer), "dtype": scoring_device(cfg.device)[1]}
