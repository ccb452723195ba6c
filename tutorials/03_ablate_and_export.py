"""Tutorial 3: knock out the heads that write " Paris", then ship the edited model.

Tutorial 2 found the attention heads that write " Paris" after "The capital of France is".
Here we ablate them by hooks and measure the effect against random heads, run a scripted
ablation study over the MLPs, export the edited model as a plain Hugging Face checkpoint, and
reload it with plain transformers to see the same effect.

    python tutorials/03_ablate_and_export.py [OUTPUT_DIR]
"""

import random
import sys
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM

import circuitlab
from circuitlab import Ablate, Head, ablation_study, direct_logit_attribution, export_hf

output = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="circuitlab-"))
output.mkdir(parents=True, exist_ok=True)
model = circuitlab.load()
prompt = "The capital of France is"
paris = model.token_id(" Paris")


def p_paris() -> float:
    """Probability of " Paris" as the next token, under whatever interventions are active."""
    return float(model.next_token_logits(prompt)[0].softmax(dim=-1)[paris])


# %%
# 1. The three heads that write " Paris" most (direct logit attribution, tutorial 2).
attribution = direct_logit_attribution(model, prompt, " Paris")
writers = [c for c, _ in attribution.top(len(attribution.components)) if isinstance(c, Head)][:3]
print(
    "heads writing ' Paris' most:", [(str(h), round(attribution.score_of(h), 2)) for h in writers]
)

# %%
# 2. Ablate them by hooks; the model is untouched outside the block.
edits = [Ablate(head) for head in writers]
intact = p_paris()
with model.intervene(*edits):
    ablated = p_paris()
    top = [(t.token, round(t.probability, 3)) for t in model.top_next_tokens(prompt, k=3)]
print(f"p(' Paris'): intact {intact:.3f}, those 3 heads ablated {ablated:.3f}; top 3 now {top}")
assert p_paris() == intact  # reversible

# A control: three random heads at a time hurt far less.
all_heads = [Head(layer, head) for layer in range(model.n_layers) for head in range(model.n_heads)]
control = []
for seed in range(5):
    with model.intervene(*[Ablate(h) for h in random.Random(seed).sample(all_heads, 3)]):
        control.append(p_paris())
print(f"3 random heads ablated (5 draws): p(' Paris') {min(control):.3f} .. {max(control):.3f}")

# %%
# 3. A scripted ablation study: each writer head alone, and every MLP.
study = ablation_study(model, prompt, " Paris", components=[*writers, "mlps"], metric="prob")
print(study)
print("ablating hurts p(' Paris') most:", [(str(c), round(v, 3)) for c, v in study.bottom(5)])
study.plot().savefig(output / "paris_ablation.png", dpi=120)

# %%
# 4. Export the edited model: the ablations become zero columns of o_proj.
folder = export_hf(model, edits, output / "smollm2-without-paris-heads", overwrite=True)
print("exported:", sorted(path.name for path in folder.iterdir()))

# %%
# 5. Reload it with plain transformers, no circuitlab involved: the same effect.
plain = AutoModelForCausalLM.from_pretrained(folder, attn_implementation="eager").eval()
ids = model.tokenize(prompt).input_ids
with torch.no_grad():
    reloaded = float(plain(input_ids=ids).logits[0, -1].softmax(dim=-1)[paris])
print(f"plain transformers, reloaded: p(' Paris') = {reloaded:.3f} (hooked: {ablated:.3f})")
assert abs(reloaded - ablated) < 1e-3
print(f"figure in {output}")
