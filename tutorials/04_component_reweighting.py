"""Tutorial 4: learn a weight per component from 20 labelled examples, and beat ICL.

Component reweighting ("When Parts are Greater Than Sums", arXiv 2406.13131) keeps the model
frozen, caches every head's and MLP's direct contribution to the label words, and learns one
weight per component from a few labelled examples. Here: the 4-way topic task on SmolLM2,
K = 24 labelled examples (4 as demonstrations, 20 to train on), a balanced test set of 48.

    python tutorials/04_component_reweighting.py [OUTPUT_DIR]
"""

import sys
import tempfile
import time
from pathlib import Path

import circuitlab
from circuitlab import ComponentReweighting, InputError, label_contributions
from circuitlab.reweighting import CalibPlus, draw_examples, split_pool_test
from circuitlab.testing import tiny_model

output = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="circuitlab-"))
output.mkdir(parents=True, exist_ok=True)
model = circuitlab.load()
task = circuitlab.load_task("topic")
print(task)

# %%
# 1. K = 24 labelled examples from a pool; the rest of the task, balanced, is the test set.
pool, test = split_pool_test(task, 24, n_test=48, seed=0)
demos, train = draw_examples(pool, 24, 4, seed=0)
print(f"demonstrations: {[task.label_names[label] for _, label in demos]}")
print(f"training examples: {train.label_counts()}; test examples: {test.label_counts()}")

# %%
# 2. Cache the contributions once (one forward pass per prompt; the demos run only once).
started = time.perf_counter()
train_c = label_contributions(model, train, demos=demos)
test_c = label_contributions(model, test, demos=demos)
print(f"cached {test_c} and the training set in {time.perf_counter() - started:.1f} s")

# %%
# 3. The full model with 4 demonstrations (4-shot ICL), and Calib+ on its probabilities.
icl = float((test_c.logits.argmax(-1) == test_c.labels).float().mean())
calib = CalibPlus().fit(train_c)
print(f"4-shot ICL accuracy {icl:.3f}; Calib+ {calib.score(test_c):.3f}")

# %%
# 4. Component reweighting: weights start at 1 (the model's own read-out) and are learned.
started = time.perf_counter()
reweighting = ComponentReweighting().fit(train_c)
seconds = time.perf_counter() - started
print(
    f"CompRW accuracy {reweighting.score(test_c):.3f} (fit in {seconds:.2f} s, "
    f"{reweighting.history_.epochs} epochs, stopped by {reweighting.history_.stopped})"
)
print("largest weights:", [(str(c), round(w, 2)) for c, w in reweighting.top_components(5)])

# %%
# 5. Single components as oracles: the best and worst component on the test set.
accuracy = (test_c.values.argmax(-1) == test_c.labels[:, None]).float().mean(0)
best, worst = int(accuracy.argmax()), int(accuracy.argmin())
print(
    f"oracle best single component {test_c.components[best]} {float(accuracy[best]):.3f}, "
    f"worst {test_c.components[worst]} {float(accuracy[worst]):.3f} (they peek at test labels)"
)

# %%
# 6. Save the weights (safetensors + JSON), reload, and classify new prompts.
path = reweighting.save(output / "topic-reweighting.safetensors")
loaded = ComponentReweighting.load(path)
news = [
    "The striker scored twice as the home side won the cup final in extra time.",
    "Shares of the retailer fell sharply after it cut its profit forecast for the year.",
]
predicted = loaded.predict_prompts(model, [task.prompt(text, demos=demos) for text in news])
print("new headlines ->", [task.label_names[int(label)] for label in predicted])

# %%
# 7. Weights belong to one model: another model is refused before any forward pass.
print(f"saved to {path}; fitted on {loaded.model_name_} (fingerprint {loaded.fingerprint_})")
try:
    loaded.predict_prompts(tiny_model(), ["the film was good"])
except InputError as error:
    print("another model is refused:", str(error).split(".")[0])
