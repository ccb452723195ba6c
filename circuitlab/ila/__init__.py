"""ILA, important layers for alignment (arXiv 2410.17875): LoRA on every layer until the loss
is stable, then learned gates γ = σ(s) on the frozen updates rank the layers; fine-tune only the
important ones (guide: ``docs/guides/ila.md``)."""

from circuitlab.ila.data import (
    INSTRUCTION_SETS,
    PLAIN_TEMPLATE,
    EncodedInstructions,
    InstructionSet,
    encode_instructions,
    instruction_prompt,
    load_instructions,
)
from circuitlab.ila.fit import (
    GateFit,
    LoraFit,
    fit_gates,
    fit_lora,
    instruction_loss,
    response_loss,
)
from circuitlab.ila.gates import GATE_UNITS, LoraGates
from circuitlab.ila.rank import ila_rank
from circuitlab.ila.result import (
    ILARanking,
    RankingOverlap,
    jaccard,
    layer_budget,
    ranking_overlap,
)

__all__ = [
    "GATE_UNITS",
    "INSTRUCTION_SETS",
    "PLAIN_TEMPLATE",
    "EncodedInstructions",
    "GateFit",
    "ILARanking",
    "InstructionSet",
    "LoraFit",
    "LoraGates",
    "RankingOverlap",
    "encode_instructions",
    "fit_gates",
    "fit_lora",
    "ila_rank",
    "instruction_loss",
    "instruction_prompt",
    "jaccard",
    "layer_budget",
    "load_instructions",
    "ranking_overlap",
    "response_loss",
]
