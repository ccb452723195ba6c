"""Attention views: one head's pattern on a prompt, and where every head attends.

- `attention_pattern` → `AttentionPattern`: the attention probabilities of chosen heads (or a
  whole layer) on one prompt, as a table, a heatmap and a self-contained HTML view (hover a
  cell for ``query → key: weight``); GQA-aware (head indices count query heads, each head's
  key/value group is shown).
- `head_summary` → `HeadSummary`: for every head, the mean attention to the previous token,
  the first token, earlier copies of the current token, and the induction target, from one
  collector pass over repeated random tokens (and/or your prompts).

Example:
    >>> from circuitlab.attention import attention_pattern, head_summary
    >>> attention_pattern(model, "The cat sat on the mat", "L3H1").save_html("l3h1.html")
    >>> head_summary(model).top("induction", 5)
"""

from circuitlab.attention.patterns import AttentionPattern, attention_pattern
from circuitlab.attention.summary import SCORES, HeadSummary, head_summary

__all__ = ["SCORES", "AttentionPattern", "HeadSummary", "attention_pattern", "head_summary"]
