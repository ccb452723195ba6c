"""Tutorial 5: score every layer with AVSS, prune the least important quarter, evaluate, export.

AVSS (arXiv 2411.02117) rates a layer by the variance of its activations over their sparsity.
Here: SmolLM2's 30 layers scored on the shipped calibration prose, beside ShortGPT's Block
Influence and two simple baselines; 25% of the layers pruned by AVSS and by drop-the-last;
the pruned models evaluated on factual QA, perplexity and sentiment (a small suite, so the
tutorial runs in about two minutes); the AVSS-pruned model exported and reloaded with plain
transformers.

    python tutorials/05_layer_importance.py [OUTPUT_DIR]
"""

import sys
import tempfile
import time
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

import circuitlab
from circuitlab import InputError, score_layers
from circuitlab.evaluation import EvaluationSuite, retention

output = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="circuitlab-"))
output.mkdir(parents=True, exist_ok=True)
model = circuitlab.load()

# %%
# 1. Score every layer in one streaming pass over held-out prose (padding never counts).
calibration = circuitlab.evaluation.load_heldout_prose("calibration")
started = time.perf_counter()
scores = score_layers(model, calibration)
print(
    f"scored {model.n_layers} layers on {scores['avss'].settings['tokens']} tokens "
    f"in {time.perf_counter() - started:.1f} s"
)
avss = scores["avss"]
print(avss.to_frame()[["layer", "avss", "variance", "sparsity", "cavss"]].round(4).head(8))
for method, result in scores.items():
    print(f"  {method:<17} 25% lowest: {list(result.lowest(25))}")
print("Block Influence vs AVSS, Spearman:", round(scores["block_influence"].spearman(avss), 2))
avss.plot(25).savefig(output / "avss.png", dpi=120)

# %%
# 2. Evaluate the intact model and two 25% prunings on a small suite.
suite = EvaluationSuite(qa_questions=24, perplexity_tokens=512, sentiment_examples=24)
original = suite.evaluate(model)
print("intact:", {task: round(value, 3) for task, value in original.items()})
for method in ("avss", "drop_last"):
    pruning = scores[method].pruning(25)
    with model.intervene(pruning):
        pruned = suite.evaluate(model)
    kept = retention(original, pruned)
    print(
        f"{method} without layers {list(pruning.layers)}: retained "
        + ", ".join(f"{task} {value:.0%}" for task, value in kept.items())
    )

# %%
# 3. Export the AVSS-pruned model as a plain Hugging Face checkpoint, and reload it.
pruning = avss.pruning(25)
folder = circuitlab.export_hf(model, [pruning], output / "smollm2-avss-pruned", overwrite=True)
reloaded = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
print(f"exported: {reloaded.config.num_hidden_layers} layers (was {model.n_layers})")
batch = model.tokenize(["The capital of France is"])
with model.intervene(pruning), torch.no_grad():
    hooked = model.logits(batch)
    plain = reloaded(input_ids=batch.input_ids).logits
print(f"plain transformers vs the hooked pruned model: {(plain - hooked).abs().max():.1e} logits")

# %%
# 4. Bad input gets a clear message.
for bad in (lambda: avss.lowest(100), lambda: score_layers(model, calibration, epsilon=-1.0)):
    try:
        bad()
    except InputError as error:
        print("refused:", error)
