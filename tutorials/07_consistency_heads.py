"""Tutorial 7: find the heads that decide whether paraphrases get the same answer, and steer them.

arXiv 2501.11041 probes every attention head's last-token output for whether the model's
answer to a prompt agrees with its answers to the same input under other instructions, then
adds a bias along a consistency direction to the best heads. Here, on SmolLM2 and the shipped
sentiment paraphrases (a small budget, so the tutorial runs in a couple of minutes): locate the
heads on some inputs under the locating paraphrases, sweep α and K on other inputs under the
held-out paraphrases next to a random-heads control, export the best edit as a plain
checkpoint, and check that plain transformers gives the same answers. The full experiment is
in docs/reproductions/consistency.md.

    python tutorials/07_consistency_heads.py [OUTPUT_DIR]
"""

import sys
import tempfile
import time
from pathlib import Path

import circuitlab
from circuitlab.consistency import (
    consistency_sweep,
    export_consistency_edit,
    load_paraphrase_task,
    locate_consistency_heads,
    plain_answers,
    read_paraphrases,
)
from circuitlab.directions import direction

output = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="circuitlab-"))
output.mkdir(parents=True, exist_ok=True)
model = circuitlab.load()

# %%
# 1. The paraphrase task: 10 instructions over the same inputs, 6 to locate, 4 held out.
task = load_paraphrase_task("sentiment").balanced_sample(32, seed=0)
task.check_label_words(model)  # every label word is one token after every paraphrase
locate_task, test_task = task.split_inputs(0.5, seed=0)  # disjoint inputs
print(task)
print("first paraphrase:", task.prompts(indices=[0], templates=[0])[0])

# %%
# 2. How consistent is the model? Pairs of paraphrases of one input answered alike.
base, _ = read_paraphrases(model, test_task, test_task.heldout, batch_size=16)
print({name: round(value, 3) for name, value in base.summary().items()})

# %%
# 3. Probe all 270 heads at once: one streaming pass, one batched logistic regression.
started = time.perf_counter()
heads = locate_consistency_heads(model, locate_task, seed=0, batch_size=16)
print(f"probed {heads.n_heads} heads in {time.perf_counter() - started:.1f} s: {heads}")
print(heads.to_frame().sort_values("accuracy", ascending=False).head(5).round(3))
heads.plot().savefig(output / "consistency_heads.png", dpi=120)
heads.save(output / "consistency_heads.json")

# %%
# 4. The directions step is general: any two groups of activations give a direction.
#    Here: the best head's outputs on consistent vs inconsistent prompts.
answers, outputs = read_paraphrases(
    model, locate_task, locate_task.locate, heads=True, batch_size=16
)
best_head = heads.top(1)[0][0]
z = outputs[:, :, best_head.layer, best_head.head].reshape(-1, model.d_head)
consistent = answers.consistent().reshape(-1)
for method in ("mean_difference", "mass_mean", "probe"):
    found = direction(z[consistent], z[~consistent], method=method)
    print(f"{best_head} {method:<15} |direction| = {float(found.vectors.norm()):.3f}")

# %%
# 5. Bias injection on held-out inputs and paraphrases, with a random-heads control.
sweep = consistency_sweep(
    model, test_task, heads, alphas=(3, 9), ks=(5, 15), control_seeds=(0,), direction_seeds=(),
    batch_size=16,
)  # fmt: skip
print(sweep)
print(sweep.table().round(3))
sweep.plot().savefig(output / "consistency_sweep.png", dpi=120)

# %%
# 6. Export the best edit (biases baked into the output projections) and reload it with plain
#    transformers: the same answer on every held-out prompt.
best = sweep.best()
edits = heads.interventions(model, best["k"], best["alpha"])
folder, edited = export_consistency_edit(model, edits, output / "consistent-smollm2", test_task)
reloaded = plain_answers(folder, model, test_task, test_task.heldout)
assert (reloaded == edited.answers).all()
print(
    f"exported K={best['k']} α={best['alpha']:g} to {folder}: consistency "
    f"{edited.consistency_rate():.3f} (base {base.consistency_rate():.3f}), reproduced by "
    f"plain transformers on all {reloaded.numel()} prompts"
)
