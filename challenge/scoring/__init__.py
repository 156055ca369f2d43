"""Scoring a submission: the sandbox, the ingestion child, its supervisor and budget, the one judge, the metric.

sandbox/processes: the child's world and its limits; child: runs unlearning() N times; supervisor
and budget: watch it and charge it; judge: the verdict and the evaluation, shared with the
Codabench scoring program; epsilon/metric: the competition's numbers; scorer: `challenge score`.
"""
