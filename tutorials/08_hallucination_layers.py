"""Tutorial 8: find the hallucination-prone layers and fine-tune only them, contrastively.

arXiv 2411.10069 contrasts the activation variance and sparsity of answers a model gets right
with answers it makes up, layer by layer, and fine-tunes the layers where they differ most.
Here, on SmolLM2 and a sample of the shipped factual questions (a small budget, so the tutorial
runs in a few minutes): grade the model's own answers, score every layer (EAVSS, HSAV, HSS and a
probe baseline) on the training questions, fine-tune the top layers with the contrastive loss,
compare the test questions before and after, and export the adapter and the merged model,
checked with plain peft and plain transformers. The full experiment, with random-layer and
other controls, is in docs/reproductions/eavss.md.

    python tutorials/08_hallucination_layers.py [OUTPUT_DIR]
"""

import sys
import tempfile
import time
from pathlib import Path

import circuitlab
from circuitlab.evaluation import load_factual_qa
from circuitlab.hallucination import (
    choice_accuracy,
    contrastive_finetune,
    export_contrastive,
    hallucination_rates,
    hallucination_scores,
    label_model_answers,
)

output = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="circuitlab-"))
output.mkdir(parents=True, exist_ok=True)
model = circuitlab.load()

# %%
# 1. Truthful and hallucinated samples: the model's greedy answers to 66 of the 660 shipped
#    questions, graded against the gold answers and their aliases.
questions = load_factual_qa(extended=True)[::10]
answers = label_model_answers(model, questions)
print(answers)
for i in range(3):
    kind = "truthful" if answers.truthful[i] else "hallucinated"
    print(f"  {answers.questions[i]!r} -> {answers.answers[i]!r} ({kind})")

# %%
# 2. Split by question (stratified): layers are chosen and trained on one part, judged on the
#    other.
train_q, test_q = answers.split_questions((0.75, 0.25), seed=0)
train, test = answers.subset(train_q), answers.subset(test_q)
by_text = {question.question: question for question in questions}
test_questions = [by_text[answers.questions[q]] for q in test_q]
print(f"train: {train.counts()} (truthful, hallucinated); test: {test.counts()}")

# %%
# 3. Every layer's scores from one streaming pass over the answer tokens.
started = time.perf_counter()
scores = hallucination_scores(model, train)
print(f"scored {scores.n_layers} layers in {time.perf_counter() - started:.1f} s: {scores}")
print(scores.to_frame()[["layer", "eavss", "hsav", "hss", "probe"]].round(3).head(8))
print(f"probe chance accuracy: {scores.chance:.3f}")
scores.plot(k=2).savefig(output / "hallucination_layers.png", dpi=120)
layers = scores.top(2, "eavss")
print("top 2 EAVSS layers:", layers)

# %%
# 4. Before: test accuracy, hallucination rate, and how often the gold answer is more likely
#    than the model's wrong answer (choice accuracy, no generation).
before = hallucination_rates(model, test_questions)
before_choice = choice_accuracy(model, test)
print("before:", {k: round(v, 3) for k, v in before.as_dict().items()},
      f"choice accuracy {before_choice.accuracy:.3f}")  # fmt: skip

# %%
# 5. Contrastive fine-tuning of those layers only (LoRA; a tiny budget: one epoch).
started = time.perf_counter()
run = contrastive_finetune(
    model, train, layers, epochs=1, learning_rate=2e-3, seed=0,
    checkpoint=output / "train.safetensors",
)  # fmt: skip
print(f"{run.settings['steps']} steps in {time.perf_counter() - started:.0f} s, "
      f"loss {run.history.losses[-1]:.3f}")  # fmt: skip

# %%
# 6. After: the same measurements, and answers that changed.
after = hallucination_rates(model, test_questions)
after_choice = choice_accuracy(model, test)
print("after: ", {k: round(v, 3) for k, v in after.as_dict().items()},
      f"choice accuracy {after_choice.accuracy:.3f}")  # fmt: skip
changed = [
    (question, old, new)
    for question, old, new in zip(
        test_questions, before.predictions, after.predictions, strict=True
    )
    if old != new
]
print(f"{len(changed)} of {len(test_questions)} test answers changed")
for question, old, new in changed[:5]:
    print(f"  {question.question} (gold {question.answer!r}): {old!r} -> {new!r}")

# %%
# 7. Export: the adapter (plain peft) and the merged model (plain transformers) give the same
#    answers as circuitlab to every test question, or nothing is written.
folder = export_contrastive(model, run.adapter, output / "contrastive-smollm2", test_questions)
print("exported", sorted(path.name for path in folder.iterdir()))
run.adapter.remove()  # the handle is the base model again
