"""Tutorial 2: which components write " Paris", and which are good, bad or label-biased.

Splits SmolLM2's final residual stream into the embedding, 270 attention heads and 30 MLPs,
attributes the " Paris" logit to each exactly (the attributions sum to the logit), then scores
every component as a sentiment classifier on the built-in task (paper: "When Parts are Greater
Than Sums", arXiv 2406.13131).

    python tutorials/02_decomposition.py [OUTPUT_DIR]
"""

import sys
import tempfile
from pathlib import Path

import circuitlab
from circuitlab import LogitDiff, component_accuracy, direct_logit_attribution, load_task

output = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="circuitlab-"))
output.mkdir(parents=True, exist_ok=True)
model = circuitlab.load()

# %%
# 1. Direct logit attribution of " Paris" (and of " Paris" versus " London").
prompt = "The capital of France is"
result = direct_logit_attribution(model, prompt, [" Paris", LogitDiff(" Paris", " London")])
print(result)
print(
    f"logit(' Paris') = {result.logits[0, 0]:.3f}; sum of attributions + constant "
    f"reproduces it to {result.reconstruction_error():.1e}"
)
print("writes ' Paris' most:", [(str(c), round(v, 2)) for c, v in result.top(5)])
print("pushes it down most:", [(str(c), round(v, 2)) for c, v in result.bottom(3)])
heads_only = [(str(c), round(v, 2)) for c, v in result.top(60) if isinstance(c, circuitlab.Head)]
print("top heads:", heads_only[:4])
print("' Paris' over ' London':", [(str(c), round(v, 2)) for c, v in result.top(3, column=1)])
result.plot_heads().savefig(output / "paris_heads.png", dpi=120)
result.plot(12).savefig(output / "paris_top.png", dpi=120)

# %%
# 2. Every component as a classifier: sentiment, 4 in-context demonstrations.
demos, rest = load_task("sentiment").split(20, seed=0)  # demonstrations never tested on
test = rest.balanced_sample(60, seed=0)
scores = component_accuracy(model, test, k_shot=4, demo_pool=demos, seed=0)
print(scores)
types = scores.component_types()
print(f"full model: {types['model_accuracy']:.2f} (chance {types['chance']:.2f})")
print("good (most accurate):", [(str(c), round(v, 2)) for c, v in scores.good(3)])
print("bad (least accurate):", [(str(c), round(v, 2)) for c, v in scores.bad(3)])
print(
    f"label-biased: {len(types['label_biased'])} of {len(scores.components)} components, "
    f"e.g. {types['label_biased'][:3]}"
)
scores.plot_heads().savefig(output / "sentiment_accuracy.png", dpi=120)
print(scores.to_frame().sort_values("accuracy", ascending=False).head())
print(f"figures in {output}")
