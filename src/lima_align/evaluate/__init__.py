"""Evaluation: LLM judges (clients, prompts as data, parsers), the paper's protocols, statistics, calibration
and checkpoint selection.

Data flows ``outputs JSONL -> judge -> judgments JSONL -> statistics / report``. Every judge call goes through
a persistent cache keyed by a stable hash of (judge model, template version, messages, sampling params), and
every judgment row keeps the raw judge text, the parsed label (or ``None``: missing, never guessed), the judge,
the template version, the order, tokens, cost and timestamps.
"""
