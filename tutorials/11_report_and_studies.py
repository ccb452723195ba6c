"""Tutorial 11: the analysis report, a scripted study, and reading both back.

`circuitlab report` runs every method compactly on one model and writes a folder to keep and
share. Here the same from Python on SmolLM2 (two sections, so it runs in seconds): write the
report, read its results back as result objects, then run a small study file (two CLI steps,
one swept) twice, so the second run skips everything the first one finished.

    python tutorials/11_report_and_studies.py [OUTPUT_DIR]
"""

# %%
import sys
import tempfile
from pathlib import Path

import circuitlab
from circuitlab.report import ReportSettings, read_results, write_report
from circuitlab.study import load_study, run_study

output = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="circuitlab-"))
output.mkdir(parents=True, exist_ok=True)
model = circuitlab.load()

# %%
# 1. A report with two sections; `circuitlab report` runs all of them (about 75 s).
settings = ReportSettings(sections=("decomposition", "patching"))
files = write_report(model, output / "report", settings, progress=False)
print("report:", files.index.relative_to(output))
print({stage: round(seconds, 1) for stage, seconds in files.seconds.items()})
print(sorted(path.name for path in files.figures))

# %%
# 2. Every number on the page is a result object in results.json.
results = read_results(output / "report")
attribution = results["decomposition"]["first_prompt"]
print(attribution.top(3))
print("sums to the logit within", f"{attribution.reconstruction_error():.1e}")
patching = results["patching"]["patching_map"]
print("strongest patching cells (layer, position, effect):", patching.top(3))

# %%
# 3. A study: CLI commands as steps, one of them swept; a rerun skips what finished.
study_file = output / "lens-study.yaml"
study_file.write_text(
    """study: lens-study
model: smollm2-135m-instruct
steps:
  - name: dla
    command: decompose
    params: {prompt: [The capital of France is], target: [" Paris"], plot: false}
  - name: lens
    command: logit-lens
    params: {prompt: [The capital of France is], target: [" Paris"], plot: false}
    sweep: {k: [1, 3]}
"""
)
study = load_study(study_file, out=output / "lens-study")
first = run_study(study, echo=lambda line: None)
again = run_study(study, echo=lambda line: None)
print([(outcome.folder, outcome.status) for outcome in first])
print([(outcome.folder, outcome.status) for outcome in again])
print(sorted(p.name for p in (output / "lens-study" / "lens" / "k=3").iterdir()))
