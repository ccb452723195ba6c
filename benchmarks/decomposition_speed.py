"""Benchmark: circuitlab's direct logit attribution versus a plain forward pass and naive TL.

Usage:
    python benchmarks/decomposition_speed.py [--model smollm2-135m-instruct | gemma3-270m]
        [--task sentiment] [--n-prompts 200] [--k-shot 4] [--batch-size 8] [--repeats 3]
        [--memory-passes 1] [--json OUT]

One process, one model, one data set: the first ``--n-prompts`` K-shot prompts of the task
(``task.prompts(k_shot=K, seed=0)``), cut into the same right-padded batches by the handle's
``model.batches`` (so every path sees identical token ids and attention masks). Four paths:

  (a) hf:         a plain ``transformers`` model (``AutoModelForCausalLM.from_pretrained`` on the
                  cached folder, float32, eager attention), ``forward(input_ids,
                  attention_mask)`` under ``torch.no_grad()``, keeping each prompt's last-token
                  logits;
  (a') hf_kept:    the same forward with ``logits_to_keep`` set to the prompts' last positions,
                  so the unembedding runs at those positions only (circuitlab does the same).
                  (a) is the goal's reference; (a') shows the cost of the decomposition itself,
                  with the saving from not unembedding every position taken out;
  (b) circuitlab: ``direct_logit_attribution(handle, prompts, label_words, batch_size=...)``
                  (hooked forward through the bridge, exact per-component decomposition at each
                  prompt's last real token, projection onto the label words);
  (c) naive TL:   per batch ``handle.bridge.run_with_cache`` with the FULL cache (no names
                  filter), then ``cache.get_full_resid_decomposition(expand_neurons=False,
                  apply_ln=True, return_labels=True)`` over all positions (``pos_slice`` is one
                  slice for every row, so it cannot pick a different last token per prompt),
                  then each prompt's last real token is kept, multiplied by the final norm's
                  gain (TransformerLens's ``apply_ln`` only divides by the cached scale) and
                  projected onto the label words' ``W_U`` columns.

Each path first runs one warm-up batch (not measured). Then ``--repeats`` passes over the whole
data set are timed, round robin (a, b, c, a, b, c, ...) so that load from other processes on the
machine affects the three paths alike. Reported per path:

  * wall time and process CPU time: medians over the timed passes;
  * peak memory, as an increase over the moment before the pass (the model weights are
    resident by then), measured two ways:
      - "peak" (RSS): the largest increase of the process's resident set size during a pass
        over the RSS just before it; median over the timed passes, under glibc's default
        malloc settings. This is what a user sees, but it depends on allocator history (glibc
        keeps freed blocks of up to 32 MiB in its heap), so it varies from pass to pass;
      - "tensors": the peak of live torch tensor bytes allocated during the pass, from the
        allocation events that ``torch.profiler`` records with ``profile_memory=True``, in
        ``--memory-passes`` extra passes per path (default 1, not timed). This does not depend
        on the allocator and is reproducible to the byte.

Goals: b/a <= 1.15 in wall time and b/a <= 1.2 in peak memory (checked on both measures).
Consistency checks on the results of the last timed passes confirm that the paths compute the
same logits and per-component attributions.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import statistics
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile
from transformers import AutoModelForCausalLM

import circuitlab
from circuitlab.decomposition.attribution import direct_logit_attribution
from circuitlab.models import cached_model_dir, get_spec
from circuitlab.tasks import load_task
from circuitlab.weights import norm_gain

GOAL_TIME_RATIO = 1.15
GOAL_MEMORY_RATIO = 1.2
PATHS = ("hf", "hf_kept", "circuitlab", "naive_tl")
TITLES = {
    "hf": "(a) plain transformers forward",
    "hf_kept": "(a') forward, logits at kept positions only",
    "circuitlab": "(b) circuitlab direct_logit_attribution",
    "naive_tl": "(c) naive TL run_with_cache + full decomposition",
}


# --------------------------------------------------------------------------- memory sampling
# Torch's CPU allocations go through its own allocator (malloc/mmap), which tracemalloc does not
# see. Memory is therefore measured as the process's resident set size (RSS): a background
# thread reads the second field of /proc/self/statm (resident pages) about every 2 ms and
# multiplies it by the page size (os.sysconf("SC_PAGE_SIZE")). The peak of a phase is the
# largest sample during it (plus one reading at its end) minus the reading taken right before
# it, after gc.collect() and glibc's malloc_trim(0) have handed freed memory back to the OS.
# Peaks shorter than the sampling interval can be missed; the tensors that matter here (logits,
# activation caches) live for tens of milliseconds or more.
_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
try:
    _LIBC: Any = ctypes.CDLL("libc.so.6")
except OSError:  # not glibc: skip trimming
    _LIBC = None


def _rss_bytes(fd: int) -> int:
    return int(os.pread(fd, 128, 0).split()[1]) * _PAGE_SIZE


def release_memory() -> None:
    """Collect garbage and return freed heap pages to the OS, so the next baseline is low."""
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


class RssSampler:
    """Background thread that records the peak RSS since the last :meth:`reset`."""

    def __init__(self, interval: float = 0.002) -> None:
        self.interval = interval
        self._fd = os.open("/proc/self/statm", os.O_RDONLY)
        self._peak = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        os.close(self._fd)

    def current(self) -> int:
        return _rss_bytes(self._fd)

    def reset(self) -> int:
        """Start a new phase; returns the baseline RSS."""
        with self._lock:
            self._peak = self.current()
            return self._peak

    def peak(self) -> int:
        with self._lock:
            self._peak = max(self._peak, self.current())
            return self._peak

    def _run(self) -> None:
        while not self._stop.is_set():
            value = self.current()
            with self._lock:
                if value > self._peak:
                    self._peak = value
            time.sleep(self.interval)


# --------------------------------------------------------------------------------- the paths
def make_paths(
    handle: circuitlab.ModelHandle,
    hf_model: Any,
    label_words: list[str],
    batch_size: int,
) -> dict[str, Callable[[list[str]], dict[str, Any]]]:
    """The three paths, each a function of a prompt list returning its (small) results."""
    label_ids = torch.tensor(handle.token_ids(label_words))
    final_gain = norm_gain(handle, handle.arch.norm("final"))
    directions = handle.hf_model.get_output_embeddings().weight.detach()[label_ids].T  # [d, t]

    def hf(texts: list[str]) -> dict[str, Any]:
        kept = []
        with torch.no_grad():
            for batch in handle.batches(texts, batch_size):
                logits = hf_model(
                    input_ids=batch.input_ids, attention_mask=batch.attention_mask
                ).logits
                kept.append(logits[torch.arange(len(batch)), batch.last_positions][:, label_ids])
                del logits
        return {"logits": torch.cat(kept)}

    def hf_kept(texts: list[str]) -> dict[str, Any]:
        kept = []
        with torch.no_grad():
            for batch in handle.batches(texts, batch_size):
                positions, inverse = torch.unique(batch.last_positions, return_inverse=True)
                logits = hf_model(
                    input_ids=batch.input_ids,
                    attention_mask=batch.attention_mask,
                    logits_to_keep=positions,
                ).logits
                kept.append(logits[torch.arange(len(batch)), inverse][:, label_ids])
                del logits
        return {"logits": torch.cat(kept)}

    def circuitlab_dla(texts: list[str]) -> dict[str, Any]:
        result = direct_logit_attribution(handle, texts, label_words, batch_size=batch_size)
        labels = [str(component) for component in result.components]
        return {"logits": result.logits, "values": result.values, "labels": labels}

    def naive_tl(texts: list[str]) -> dict[str, Any]:
        kept, labels = [], []
        with torch.no_grad():
            for batch in handle.batches(texts, batch_size):
                logits, cache = handle.bridge.run_with_cache(
                    batch.input_ids, attention_mask=batch.attention_mask
                )
                stack, labels = cache.get_full_resid_decomposition(
                    expand_neurons=False, apply_ln=True, return_labels=True
                )  # [component, batch, pos, d_model], divided by ln_final's cached scale
                last = stack[:, torch.arange(len(batch)), batch.last_positions]
                kept.append(((last * final_gain) @ directions).transpose(0, 1))
                del logits, cache, stack, last
        return {"values": torch.cat(kept), "labels": labels}

    return {"hf": hf, "hf_kept": hf_kept, "circuitlab": circuitlab_dla, "naive_tl": naive_tl}


def _tl_label(label: str) -> str:
    """TransformerLens stack labels in circuitlab's component notation."""
    if label.endswith("_mlp_out"):
        return f"MLP{label.removesuffix('_mlp_out')}"
    return {"embed": "EMBED", "bias": "BIAS"}.get(label, label)


def consistency(outputs: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Largest absolute differences between the paths' results (in logits)."""
    hf, ours, naive = outputs["hf"], outputs["circuitlab"], outputs["naive_tl"]
    checks = {
        "logits_circuitlab_vs_hf": float((ours["logits"] - hf["logits"]).abs().max()),
        "logits_hf_kept_vs_hf": float((outputs["hf_kept"]["logits"] - hf["logits"]).abs().max()),
    }
    index = {label: i for i, label in enumerate(ours["labels"])}
    shared = [
        (i, index[_tl_label(label)])
        for i, label in enumerate(naive["labels"])
        if _tl_label(label) in index
    ]
    naive_values = naive["values"][:, [i for i, _ in shared]]
    our_values = ours["values"][:, [j for _, j in shared]]
    checks["components_compared"] = float(len(shared))
    checks["attributions_naive_vs_circuitlab"] = float((naive_values - our_values).abs().max())
    checks["naive_sum_vs_hf_logits"] = float((naive["values"].sum(1) - hf["logits"]).abs().max())
    return checks


# -------------------------------------------------------------------------------- the runner
def measure(
    sampler: RssSampler, run: Callable[[list[str]], Any], prompts: list[str]
) -> tuple[float, float, int, int, Any]:
    """Wall seconds, CPU seconds, baseline RSS, peak RSS increase (bytes), result of one pass."""
    release_memory()
    baseline = sampler.reset()
    wall, cpu = time.perf_counter(), time.process_time()
    result = run(prompts)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    peak = sampler.peak() - baseline
    return wall, cpu, baseline, peak, result


def tensor_peak(run: Callable[[list[str]], Any], prompts: list[str]) -> int:
    """Peak bytes of torch tensors allocated (and still live) at any moment during one pass.

    ``torch.profiler`` with ``profile_memory=True`` records one event per allocation (+bytes)
    and per free (-bytes); their running sum in time order is the live total.
    """
    release_memory()
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as profiler:
        run(prompts)
    events = [e for e in profiler.profiler.kineto_results.events() if e.name() == "[memory]"]
    live = peak = 0
    for event in sorted(events, key=lambda e: e.start_ns()):
        live += event.nbytes()
        peak = max(peak, live)
    return peak


def circuitlab_version() -> str:
    """The git commit of the circuitlab sources in use (``+dirty`` if they have local edits)."""
    folder = os.path.dirname(os.path.dirname(os.path.abspath(circuitlab.__file__)))
    try:
        commit = subprocess.run(
            ["git", "-C", folder, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", folder, "status", "--porcelain", "circuitlab"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return circuitlab.__version__
    return f"{circuitlab.__version__} @ {commit}{'+dirty' if dirty else ''}"


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=circuitlab.DEFAULT_MODEL)
    parser.add_argument("--task", default="sentiment")
    parser.add_argument("--n-prompts", type=int, default=200)
    parser.add_argument("--k-shot", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="timed passes per path (median)")
    parser.add_argument(
        "--memory-passes",
        type=int,
        default=1,
        help="extra passes per path under torch.profiler for the live-tensor peak (0: skip)",
    )
    parser.add_argument("--json", help="write all numbers to this file")
    args = parser.parse_args()

    handle = circuitlab.load(args.model)
    hf_model = AutoModelForCausalLM.from_pretrained(
        cached_model_dir(get_spec(args.model)), dtype=torch.float32, attn_implementation="eager"
    ).eval()
    task = load_task(args.task)
    prompts = task.prompts(k_shot=args.k_shot, seed=0)[: args.n_prompts]
    label_words = list(task.label_words)
    widths = [batch.input_ids.shape[1] for batch in handle.batches(prompts, args.batch_size)]
    paths = make_paths(handle, hf_model, label_words, args.batch_size)
    load_before = os.getloadavg()[0]
    version = circuitlab_version()
    print(
        f"circuitlab {version}; model {handle.name} ({handle.n_layers} layers, d_vocab "
        f"{handle.d_vocab}), task "
        f"{task.name}, {len(prompts)} prompts ({args.k_shot}-shot), batch {args.batch_size}: "
        f"{len(widths)} batches of {min(widths)}..{max(widths)} tokens; torch threads "
        f"{torch.get_num_threads()}; load average {load_before:.2f}"
    )

    runs: dict[str, dict[str, list[float]]] = {
        name: {"wall": [], "cpu": [], "baseline": [], "peak": [], "tensors": []} for name in PATHS
    }
    outputs: dict[str, Any] = {}
    with RssSampler() as sampler:
        for name in PATHS:  # warm-up: one batch per path, not measured
            paths[name](prompts[: args.batch_size])
        print("timed passes (glibc's default malloc settings):")
        for _ in range(args.repeats):
            for name in PATHS:
                wall, cpu, base, peak, outputs[name] = measure(sampler, paths[name], prompts)
                for key, value in (("wall", wall), ("cpu", cpu), ("baseline", base)):
                    runs[name][key].append(value)
                runs[name]["peak"].append(peak)
                print(
                    f"  {name:<11} wall {wall:8.2f} s  cpu {cpu:8.2f} s  baseline RSS "
                    f"{base / 2**20:7.1f} MB  peak +{peak / 2**20:7.1f} MB"
                )
        if args.memory_passes > 0:
            print("memory passes (torch.profiler, live tensor bytes):")
        for _ in range(args.memory_passes):
            for name in PATHS:
                peak = tensor_peak(paths[name], prompts)
                runs[name]["tensors"].append(peak)
                print(f"  {name:<11} tensors peak +{peak / 2**20:7.1f} MB")
        final_rss = sampler.current()

    summary = {
        name: {
            "wall_seconds_median": statistics.median(runs[name]["wall"]),
            "cpu_seconds_median": statistics.median(runs[name]["cpu"]),
            "peak_mb_median": statistics.median(runs[name]["peak"]) / 2**20,
            "tensor_peak_mb": max(runs[name]["tensors"], default=float("nan")) / 2**20,
            "wall_seconds_all": runs[name]["wall"],
            "cpu_seconds_all": runs[name]["cpu"],
            "peak_mb_all": [value / 2**20 for value in runs[name]["peak"]],
            "tensor_peak_mb_all": [value / 2**20 for value in runs[name]["tensors"]],
            "baseline_rss_mb_all": [value / 2**20 for value in runs[name]["baseline"]],
        }
        for name in PATHS
    }
    keys = ("wall_seconds_median", "cpu_seconds_median", "peak_mb_median", "tensor_peak_mb")
    ratios = {
        f"{name}/hf": {key: _ratio(summary[name][key], summary["hf"][key]) for key in keys}
        for name in ("circuitlab", "naive_tl")
    }
    ratios["circuitlab/hf_kept"] = {
        key: _ratio(summary["circuitlab"][key], summary["hf_kept"][key]) for key in keys
    }
    checks = consistency(outputs)

    print()
    print(
        f"{'path':<50} {'wall s':>8} {'cpu s':>8} {'peak MB':>9} {'tensor MB':>9}\n"
        f"{'':<50} {'median':>8} {'median':>8} {'median':>9} {'(torch)':>9}"
    )
    for name in PATHS:
        row = summary[name]
        print(
            f"{TITLES[name]:<50} {row['wall_seconds_median']:8.2f} "
            f"{row['cpu_seconds_median']:8.2f} {row['peak_mb_median']:9.1f} "
            f"{row['tensor_peak_mb']:9.1f}"
        )
    print()
    for label, key in (
        ("b/a", "circuitlab/hf"),
        ("c/a", "naive_tl/hf"),
        ("b/a'", "circuitlab/hf_kept"),
    ):
        ratio = ratios[key]
        print(
            f"{label}: time {ratio['wall_seconds_median']:.3f} (cpu "
            f"{ratio['cpu_seconds_median']:.3f}); peak memory {ratio['peak_mb_median']:.3f} "
            f"RSS, {ratio['tensor_peak_mb']:.3f} torch tensors"
        )
    ours = ratios["circuitlab/hf"]
    measured = args.memory_passes > 0
    goals_met = {
        "time": ours["wall_seconds_median"] <= GOAL_TIME_RATIO,
        "memory_rss": ours["peak_mb_median"] <= GOAL_MEMORY_RATIO,
        "memory_tensors": ours["tensor_peak_mb"] <= GOAL_MEMORY_RATIO if measured else None,
    }
    verdict = {True: "met", False: "MISSED", None: "not measured"}
    print(
        f"goals: b/a time <= {GOAL_TIME_RATIO} ({verdict[goals_met['time']]}); b/a peak memory "
        f"<= {GOAL_MEMORY_RATIO} ({verdict[goals_met['memory_rss']]} RSS, "
        f"{verdict[goals_met['memory_tensors']]} torch tensors)"
    )
    print(
        "consistency (max abs difference, logits): "
        + ", ".join(
            f"{key} {value:.2e}" if key != "components_compared" else f"{key} {int(value)}"
            for key, value in checks.items()
        )
    )
    load_after = os.getloadavg()[0]
    print(f"RSS at end {final_rss / 2**20:.0f} MB; load average {load_after:.2f}")

    if args.json:
        record = {
            "circuitlab": version,
            "model": handle.name,
            "task": task.name,
            "n_prompts": len(prompts),
            "k_shot": args.k_shot,
            "batch_size": args.batch_size,
            "repeats": args.repeats,
            "memory_passes": args.memory_passes,
            "batch_widths": widths,
            "torch_threads": torch.get_num_threads(),
            "load_average_before_after": [load_before, load_after],
            "paths": summary,
            "ratios": ratios,
            "goals": {"time_ratio": GOAL_TIME_RATIO, "memory_ratio": GOAL_MEMORY_RATIO},
            "goals_met": goals_met,
            "consistency": checks,
        }
        with open(args.json, "w") as out:
            json.dump(record, out, indent=2)


if __name__ == "__main__":
    main()
