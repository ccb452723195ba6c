"""Tutorial 10: find the circuit of a country swap with activation and attribution patching.

"The Eiffel Tower is in the city of" → " Paris"; "The Colosseum is in the city of" → " Rome".
Both prompts have 9 tokens, so every position can be compared. We patch the clean run's
activations into the corrupted run (denoising) to see where the answer travels: layer by
position in the residual stream, then head by head at the last token. Attribution patching
estimates the same effects from one backward pass. The heads found are then checked with the
tools of the earlier tutorials: direct logit attribution (do they write " Paris" themselves?)
and ablation (does the clean answer need them?).

    python tutorials/10_patching_circuits.py [OUTPUT_DIR]
"""

import sys
import tempfile
from pathlib import Path

import circuitlab
from circuitlab import (
    Ablate,
    Head,
    LogitDiff,
    Patch,
    PromptPair,
    activation_patching,
    direct_logit_attribution,
    logit_lens,
)
from circuitlab.attention import attention_pattern
from circuitlab.patching import attribution_patching

output = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="circuitlab-"))
output.mkdir(parents=True, exist_ok=True)
model = circuitlab.load()
pair = PromptPair(
    clean="The Eiffel Tower is in the city of",
    corrupted="The Colosseum is in the city of",
    answer=" Paris",
    wrong=" Rome",
)
print(model.to_str_tokens(pair.clean))
print(model.to_str_tokens(pair.corrupted))


def paris_minus_rome(prompt: str) -> float:
    """logit(" Paris") - logit(" Rome") after ``prompt``, under the interventions in force."""
    logits = model.next_token_logits(prompt)[0]
    return float(logits[model.token_id(" Paris")] - logits[model.token_id(" Rome")])


# %%
# 1. The residual stream, layer by position: where does the landmark's answer live?
residual = activation_patching(model, [pair], site="resid_pre")
print(residual)
print(f"clean {residual.clean.item():.2f}, corrupted {residual.corrupted.item():.2f} (logit diff)")
normalised = residual.normalised[0]  # [layer, position]
last = len(residual.columns) - 1
moved = next(layer for layer in residual.layers if normalised[layer, last] > 0.5)
print(f"patching the last position restores over half the answer from layer {moved} on")
for layer in (0, moved - 1, moved, residual.layers[-1]):
    row = ", ".join(f"{value:.2f}" for value in normalised[layer].tolist())
    print(f"  layer {layer:>2}: [{row}]")
residual.plot().savefig(output / "residual_map.png")
# below that layer the landmark's own tokens hold the answer; from it on, the last position
assert 1 <= int(normalised[moved - 1].argmax()) <= 3
assert int(normalised[moved].argmax()) == last

# %%
# 2. Heads at the last token: which heads of the layers below `moved` carry the answer over?
heads = activation_patching(model, [pair], site="z", positions=[-1])
print("heads whose last-token output restores ' Paris' most:", heads.top(5))
movers = [
    Head(layer, head) for layer, head, effect in heads.top(5) if layer < moved and effect > 0.1
]
print("movers:", [str(head) for head in movers])
heads.plot().savefig(output / "head_map.png")
assert movers

# %%
# 3. Attribution patching: every component's effect estimated from one backward pass.
#    (attribution_patching(..., exact=True) adds the exact effects and their Spearman ρ;
#    benchmarks/patching_speed.py measures it on four tasks.)
estimate = attribution_patching(model, [pair])
print(estimate)
print("largest estimated effects:", [(str(c), round(v, 2)) for c, v in estimate.top(5)])
estimate.plot().savefig(output / "attribution_heads.png")

# %%
# 4. Patch the movers together: how much of the clean answer do they carry on their own?
both = [Patch(head, source=[pair.clean], positions=-1) for head in movers]
corrupted = paris_minus_rome(pair.corrupted)
with model.intervene(*both):
    patched = paris_minus_rome(pair.corrupted)
clean = paris_minus_rome(pair.clean)
share = (patched - corrupted) / (clean - corrupted)
print(f"patching {[str(h) for h in movers]} recovers {share:.0%} of the clean logit difference")
assert share > 0.2

# %%
# 5. Check with the exact decomposition: do the movers write " Paris" - " Rome" directly?
attribution = direct_logit_attribution(model, pair.clean, LogitDiff(" Paris", " Rome"))
for head in movers:
    rank = [c for c, _ in attribution.top(len(attribution.components))].index(head)
    print(f"{head}: direct logit attribution {attribution.score_of(head):+.2f} (rank {rank + 1})")

# %%
# 6. Check with ablation: the clean answer without the movers (mean over the corrupted prompt's
#    positions would also remove the landmark; zero ablation removes the head altogether).
with model.intervene(*[Ablate(head) for head in movers]):
    ablated = paris_minus_rome(pair.clean)
print(f"logit diff on the clean prompt: intact {clean:.2f}, movers ablated {ablated:.2f}")
assert ablated < clean

# %%
# 7. Where do the movers look, and when does " Paris" appear? Their attention from the last
#    token, and the logit lens of the clean prompt (the final norm recomputed at every layer).
view = attention_pattern(model, pair.clean, movers)
tokens = model.to_str_tokens(pair.clean)
for head in movers:
    weights = view.weights(head)[-1]
    key = int(weights.argmax())
    landmark = float(weights[1:4].sum())
    print(
        f"{head} at the last token attends most to {tokens[key]!r} ({float(weights[key]):.2f});"
        f" to the landmark's tokens {tokens[1:4]} {landmark:.2f} in all"
    )
view.save_html(output / "movers.html")  # hover a cell for its tokens and weight
lens = logit_lens(model, pair.clean, [" Paris", " Rome"])
table = lens.layer_table()
first = table[table["' Paris' rank"] == 0]["layer"].tolist()
print(f"' Paris' is the lens's top token from layer {first[0]} on" if first else "never top")
print(table.iloc[[0, moved, moved + 1, -1]].to_string(index=False))
