"""Scripted, resumable studies: a YAML file of CLI steps run into one folder of results.

    >>> study = load_study("studies/quick-tour.yaml", out="results/quick-tour")
    >>> run_study(study)   # rerun after a kill: finished runs are skipped

See `circuitlab.study.schema` for the file format and `circuitlab.study.runner` for the folder.
"""

from circuitlab.study.runner import MANIFEST, RunOutcome, run_study
from circuitlab.study.schema import StepRun, Study, load_study

__all__ = ["MANIFEST", "RunOutcome", "StepRun", "Study", "load_study", "run_study"]
