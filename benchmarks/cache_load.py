"""Benchmark: loading a registry model from its GGUF versus from circuitlab's safetensors cache.

Usage:
    python benchmarks/cache_load.py [--model smollm2-135m-instruct] [--repeats 5] [--json OUT]

Both paths run in this process after imports, in a fresh temporary cache root (the verified
GGUF is copied in first, so no download is timed):
  * gguf:   circuitlab.load() on an empty cache: dequantize the GGUF, write safetensors +
            tokenizer + manifest, verify, then load and boot the bridge;
  * cached: circuitlab.load() again: verify sizes and sha256 of the entry, load, boot.
"""

from __future__ import annotations

import argparse
import importlib
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import circuitlab
from circuitlab.models import get_spec
from circuitlab.models.sources import cached_gguf_path, fetch_gguf


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=circuitlab.DEFAULT_MODEL)
    parser.add_argument("--repeats", type=int, default=5, help="cached loads to time (median)")
    parser.add_argument("--json", help="write the numbers to this file")
    args = parser.parse_args()
    spec = get_spec(args.model)
    gguf = fetch_gguf(spec)  # into the user's cache; not timed
    circuitlab.ModelHandle  # noqa: B018 - `import circuitlab` is lazy: import the model layer now
    importlib.import_module("circuitlab.loading")
    with tempfile.TemporaryDirectory(prefix="circuitlab-bench-") as root:
        target = cached_gguf_path(spec, root)
        target.parent.mkdir(parents=True)
        shutil.copyfile(gguf, target)

        started = time.perf_counter()
        model = circuitlab.load(spec.name, cache_dir=root)
        gguf_seconds = time.perf_counter() - started
        top = model.top_next_tokens("The capital of France is", k=1)[0].token
        del model

        cached = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            model = circuitlab.load(spec.name, cache_dir=root)
            cached.append(time.perf_counter() - started)
            del model
        size_mb = (
            sum(p.stat().st_size for p in (Path(root) / "models" / spec.name).iterdir()) / 2**20
        )
    result = {
        "model": spec.name,
        "gguf_load_seconds": round(gguf_seconds, 2),
        "cached_load_seconds_median": round(statistics.median(cached), 2),
        "cached_load_seconds_all": [round(value, 2) for value in cached],
        "speedup": round(gguf_seconds / statistics.median(cached), 1),
        "cache_entry_mb": round(size_mb, 1),
        "top_prediction": top,
    }
    print(
        f"{spec.name}: first load from GGUF {result['gguf_load_seconds']} s, cached load "
        f"{result['cached_load_seconds_median']} s (median of {args.repeats}), "
        f"{result['speedup']}x faster; cache entry {result['cache_entry_mb']} MB"
    )
    print(json.dumps(result))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
