"""The sweep's work as a graph of jobs: train what is missing, measure every row against its own
seed's baseline, and collect the tables, the plot and the report (the ``sweep`` command's engine).

Stages, each needing only the results of earlier ones (``engine/launchers.py`` runs them in this
process, as processes, or as SLURM jobs):

    0 features     the frozen backbone's features of the train, val and test splits, cached once
    1 baseline     one per seed: trained and scored, with its floor and oracle rows
    2 squeezed     one per configuration and seed, the continuous reference among them, each scored
                   against its seed's baseline; input: one per image codec and quality (every seed)
    3 collect      the tables, the plot and the report from the results that exist, whatever the rest
                   did; each squeezed row against its seed's reference, from their per-image counts

Every job writes its rows to ``results/<row>.json`` as soon as they are measured, so any job can run
in any process, and a re-run skips what has a result. A job that fails writes its one-line reason to
``jobs/<job>.failed.json``; its rows become failed rows, and the other jobs go on.

Parts: ``spec.py`` (what a sweep is, as plain values, and its job graph), ``runner.py`` (running
a job: training and measuring rows), ``rows.py`` (the rows as plain values), ``collect.py`` (the
tables, the plot and the report), ``estimate.py`` (what a sweep will cost, for ``--dry_run``).
"""

from embeddings_squeeze.engine.sweep.collect import collect
from embeddings_squeeze.engine.sweep.runner import Sweep, failure_reason
from embeddings_squeeze.engine.sweep.spec import Job, JobKind, Plan, SweepSpec

__all__ = ["Job", "JobKind", "Plan", "Sweep", "SweepSpec", "collect", "failure_reason"]
