"""Tutorial 9: find the layers that matter for instruction tuning (ILA), and tune only those.

ILA (arXiv 2410.17875) trains LoRA on every layer until the loss is stable, then freezes the
adapter and learns one gate γ per layer that scales its update (W = W₀ + γ·ΔW) under a budget;
the layers that keep the largest γ are the ones the fine-tuning needs. Here, on SmolLM2 and 40
pairs of the shipped "facts" instruction set (a small budget, so the tutorial runs in about two
minutes): rank the layers, get the peft config that tunes only the top quarter, train it, compare
the held-out loss, and reload the adapter with plain peft. The full experiment (three data sets,
three seeds, random and AVSS controls) is in docs/reproductions/ila.md.

    python tutorials/09_ila_layers.py [OUTPUT_DIR]
"""

import sys
import tempfile
from pathlib import Path

import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

import circuitlab
from circuitlab.ila import (
    fit_lora,
    ila_rank,
    instruction_loss,
    instruction_prompt,
    load_instructions,
)
from circuitlab.models import cached_model_dir, get_spec

output = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="circuitlab-"))
output.mkdir(parents=True, exist_ok=True)
model = circuitlab.load()

# %%
# 1. Instruction data: the shipped sets hold train and held-out splits; each pair is formatted
#    with the model's chat template, and only the response tokens are scored.
train = load_instructions("facts", limit=40)
heldout = load_instructions("facts", split="heldout", limit=24)
print(train, heldout)
print(repr(instruction_prompt(model, train.instructions[0]) + train.responses[0]))

# %%
# 2. Both stages: stage 1 stops once the mean loss of the last `window` steps is within 2% of
#    the window before (or at max_steps); stage 2 learns the gates for `gate_steps` steps.
ranking = ila_rank(model, train, max_steps=12, window=4, gate_steps=5, seed=0)
print(ranking)
print(f"stage 1: {ranking.stage1['steps']} steps ({ranking.stage1['stopped']}), "
      f"{ranking.stage1['seconds']:.0f} s; stage 2: {ranking.stage2['seconds']:.0f} s")  # fmt: skip
top = ranking.top(percent=25)
print("γ by layer:", [round(g, 3) for g in ranking.gamma])
print("top 25% of the layers:", top)
ranking.plot().savefig(output / "ila-ranking.png", dpi=100)
ranking.save(output / "ila-ranking.json")

# %%
# 3. The ranking as a peft config (layers_to_transform), ready for the plain HF model.
config = ranking.lora_config(model, percent=25)
print("peft config:", config.layers_to_transform, sorted(config.target_modules))

# %%
# 4. Tune only those layers, for a fixed number of steps, and compare the held-out loss.
before = instruction_loss(model, heldout)
tuned = fit_lora(model, train, top, stable=None, max_steps=10, seed=0)
after = instruction_loss(model, heldout)
print(f"held-out loss (nats/token): {before:.3f} -> {after:.3f} with LoRA on {len(top)} layers")
assert after < before, "fine-tuning the top layers should lower the held-out loss"

# %%
# 5. The adapter is a plain peft adapter: reload it on the plain transformers model and check it
#    computes what circuitlab computes.
tuned.adapter.save(output / "adapter", overwrite=True)
batch = model.tokenize([instruction_prompt(model, heldout.instructions[0])])
ours = model.logits(batch)[0, -1]
base = AutoModelForCausalLM.from_pretrained(
    cached_model_dir(get_spec(model.name)), dtype=torch.float32, attn_implementation="eager"
)
plain = PeftModel.from_pretrained(base, output / "adapter").eval()
with torch.no_grad():
    theirs = plain(input_ids=batch.input_ids, attention_mask=batch.attention_mask).logits[0, -1]
print(
    f"plain peft vs circuitlab, last-token logits: max |diff| = {(ours - theirs).abs().max():.2e}"
)
assert torch.allclose(ours, theirs, atol=1e-4)
tuned.adapter.remove()
print(f"outputs in {output}")
