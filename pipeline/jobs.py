"""Job specs, for users: ``from pipeline.jobs import load_job``.

The public home of :mod:`pipeline.core.jobs` (where the implementation lives, in the core
layer). Importing it loads pydantic and YAML, never a workflow's implementation.
"""

from pipeline.core.jobs import Job, JobSpec, JobStep, StageStep, build_job, load_job, parse_job

__all__ = ["Job", "JobSpec", "JobStep", "StageStep", "build_job", "load_job", "parse_job"]
