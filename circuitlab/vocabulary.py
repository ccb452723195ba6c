"""The names users choose from (metrics, component groups, tasks, methods, sites) and defaults.

Plain data with no heavy imports, so that the command line can offer these choices (and
``circuitlab --help`` can list them) without importing torch or any analysis. The modules that
use them import them from here.
"""

from __future__ import annotations

__all__ = [
    "CHOICE_METRICS",
    "COMPONENT_GROUPS",
    "DEFAULT_EPSILON",
    "DEFAULT_PERCENTS",
    "EVALUATION_TASKS",
    "HALLUCINATION_METHODS",
    "METRICS",
    "PATCHABLE_KINDS",
    "PATCH_METRICS",
    "SCORE_METHODS",
    "SCORE_SITES",
]

METRICS: dict[str, str] = {
    "logit_diff": "gold label word's logit minus the largest other label word's logit (for "
    "prompts: the logit of A minus the logit of B, --diff A B)",
    "accuracy": "1 if the gold label word has the largest logit among the label words, else 0",
    "log_prob": "log-probability of the gold token (softmax over the whole vocabulary), nats",
    "prob": "probability of the gold token (softmax over the whole vocabulary)",
    "logit": "raw logit of the gold token",
}
"""Ablation-study metric names and what each measures per example (the study reports their
mean)."""

CHOICE_METRICS = ("logit_diff", "accuracy")
"""Metrics that compare label words, so they need a classification task (``logit_diff``
also measures prompts whose targets are `LogitDiff` pairs)."""

COMPONENT_GROUPS = ("heads", "mlps", "layers")
"""Names that stand for every attention head, every MLP, or every whole layer."""

EVALUATION_TASKS = ("qa", "perplexity", "sentiment")
"""Task kinds: factual QA (contains-gold accuracy), perplexity on held-out prose, and 4-shot
sentiment accuracy."""

DEFAULT_EPSILON = 0.05
"""Sparsity threshold ε (absolute): ``|a| < 0.05`` counts as near zero. The authors' 1e-5
gives a sparsity of ~0 on real block outputs (see the docs' table); 0.05 spreads the layers."""

DEFAULT_PERCENTS = (10.0, 25.0, 40.0)
"""The k sweep (percent of layers removed); 25% is the paper's setting."""

SCORE_METHODS = ("avss", "block_influence", "angular_distance", "random", "drop_last")
"""Methods `circuitlab.score_layers` computes (the ground truth needs evaluations: see
`circuitlab.layers.ground_truth_scores`)."""

HALLUCINATION_METHODS = ("eavss", "hsav", "hss", "probe")
"""The layer rankings `circuitlab.hallucination.hallucination_scores` returns."""

SCORE_SITES = ("block", "attn", "mlp")
"""Which activation layer scores measure: the block's output (the paper's), or what its
attention or MLP writes into the residual stream."""

INSTRUCTION_SETS = ("facts", "steps", "rewrite")
"""The instruction-following sets circuitlab ships for ILA (`circuitlab.ila.load_instructions`):
concise factual answers, step-by-step explanations, short rewriting tasks."""

ILA_SELECTIONS = ("all", "top", "freeze-bottom", "random", "avss")
"""How `circuitlab ila-finetune` chooses the layers that get LoRA: every layer, the ILA top k%,
every layer but the ILA bottom k%, k% random layers, the AVSS top k%."""

REPORT_SECTIONS = (
    "decomposition",
    "component_accuracy",
    "layers",
    "patching",
    "consistency",
    "hallucination",
    "ila",
)
"""The sections of `circuitlab report`, in page order (``ila`` runs only with a stage-1
adapter)."""

PARAPHRASE_TASKS = ("sentiment", "topic")
"""The paraphrase tasks circuitlab ships for the consistency analysis."""

PATCHABLE_KINDS = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "z")
"""Site kinds a `Patch` writes (``z`` for one head, or every head of a layer); activation
patching sweeps positions at the first five and heads at ``z``."""

PATCH_METRICS: dict[str, str] = {
    "logit_diff": "logit of the pair's answer minus the logit of its wrong answer",
    "log_prob": "log-probability of the pair's answer (softmax over the vocabulary), nats",
    "prob": "probability of the pair's answer",
    "logit": "logit of the pair's answer",
}
"""Built-in activation-patching metrics, read at each run's last token."""
