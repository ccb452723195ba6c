"""Tutorial 6: one streaming pass, many readers — the core every analysis runs on.

Streams prompts through SmolLM2 once and reads per-head outputs, label-word logits and
per-group mean residuals together; checks that two shards of the data merge into the
one-pass result (what data-parallel processes do); and writes your own reader.

    python tutorials/06_streaming_collector.py
"""

import torch

import circuitlab
from circuitlab import sites
from circuitlab.collector import CapturedBatch
from circuitlab.readers import GroupMean, Keep, Logits, Moments, Reader

model = circuitlab.load()

capitals = [f"The capital of {country} is" for country in ("France", "Italy", "Spain", "Japan")]
sums = [f"{a} plus {b} is" for a, b in ((2, 2), (3, 4), (5, 1), (6, 2))]
prompts = capitals + sums
groups = [0] * len(capitals) + [1] * len(sums)

# %%
# 1. One pass, three readers: per-head outputs of layer 20 at each prompt's last token, the
#    logits of two answer words, and the mean block-15 residual of each group of prompts.
answers = [model.token_id(" Paris"), model.token_id(" Rome")]
out = circuitlab.collect(
    model,
    prompts,
    {
        "z": Keep(sites.z(20)),
        "answers": Logits(columns=answers),
        "group_means": GroupMean(sites.resid_post(15), groups),
    },
    batch_size=4,
)
print("z", tuple(out["z"].shape))  # [prompt, head, d_head]
print("' Paris' and ' Rome' logits per prompt:\n", out["answers"].round(decimals=2))
gap = out["group_means"][0] - out["group_means"][1]
print(f"capital-vs-arithmetic direction at layer 15: norm {gap.norm():.2f}")

# %%
# 2. Results come back in data order whatever the batching, and equal the prompts run alone.
alone = model.next_token_logits(prompts[5])[0, answers]
assert torch.allclose(out["answers"][5], alone, atol=1e-4)

# %%
# 3. Shards merge: statistics over every real token, collected in two halves (as two
#    processes would), equal those of a single pass.
texts = circuitlab.evaluation.load_heldout_prose("calibration")[:2]
whole = {"m": Moments(sites.mlp_out(10), epsilon=1e-3)}
first = {"m": Moments(sites.mlp_out(10), epsilon=1e-3)}
second = {"m": Moments(sites.mlp_out(10), epsilon=1e-3)}
batches = circuitlab.collector.plan_batches(model, texts, batch_size=1)
print(f"{len(batches)} batches; shard 0 runs batches 0, 2, ...; shard 1 runs 1, 3, ...")
for readers, shard in ((whole, None), (first, (0, 2)), (second, (1, 2))):
    circuitlab.collect(model, texts, readers, positions="all", batch_size=1, shard=shard)
first["m"].merge(second["m"])
print(
    f"MLP 10 variance {whole['m'].result().variance:.6f} (one pass) vs "
    f"{first['m'].result().variance:.6f} (two shards merged); sparsity "
    f"{whole['m'].result().sparsity:.4f}"
)
assert abs(first["m"].result().variance - whole["m"].result().variance) < 1e-6


# %%
# 4. A reader of your own: the norm of each head's output at the last token, averaged.
class HeadNorms(Reader):
    """Mean L2 norm of every head's z at layer ``layer`` over the prompts."""

    def __init__(self, layer: int) -> None:
        self.sites = (sites.z(layer),)
        self.total, self.count = 0.0, 0

    def update(self, batch: CapturedBatch) -> None:
        self.total = self.total + batch[self.sites[0]].norm(dim=-1).sum(dim=0).double()
        self.count += len(batch)

    def merge(self, other: "HeadNorms") -> None:
        self.total, self.count = self.total + other.total, self.count + other.count

    def result(self) -> torch.Tensor:
        return self.total / self.count


norms = circuitlab.collect(model, prompts, {"norms": HeadNorms(20)})["norms"]
print("mean |z| of layer 20's heads:", norms.round(decimals=2).tolist())
