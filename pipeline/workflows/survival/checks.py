"""Checks of the survival stages' parameters against the job's ``cohort`` step, run when a job
spec is validated (``pipeline validate``): a covariate the cohort does not define is reported
with its line, before any work. Pydantic models only."""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence

from pipeline.core.registry import EarlierStep, JobProblems
from pipeline.workflows.survival.spec import (
    CohortParams,
    Covariate,
    CoxParams,
    KMParams,
    PhenotypeParams,
)

__all__ = ["check_cox_job", "check_kaplan_meier_job", "check_phenotypes_job"]


def _job_covariates(earlier: Sequence[EarlierStep]) -> dict[str, Covariate] | None:
    cohorts = [e.params for e in earlier if e.stage == "cohort"]
    if not cohorts or not isinstance(cohorts[-1], CohortParams):
        return None  # the cohort may come from an earlier job on the same store
    return {c.name: c for c in cohorts[-1].covariates}


def _unknown(
    field: str,
    names: Sequence[str],
    known: Mapping[str, Covariate],
    what: str = "the cohort stage's covariates",
) -> JobProblems:
    bad = [n for n in names if n not in known]
    if not bad:
        return []
    close = [m for n in bad for m in difflib.get_close_matches(n, list(known), n=1)]
    hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
    head = f"{bad[0]!r} is not one of" if len(bad) == 1 else f"{bad} are not among"
    return [((field,), f"{head} {what} ({', '.join(known)}){hint}")]


def check_kaplan_meier_job(params: KMParams, earlier: Sequence[EarlierStep]) -> JobProblems:
    """``kaplan_meier``'s group_by and cuts against the job's cohort covariates."""
    known = _job_covariates(earlier)
    if known is None:
        return []
    problems = _unknown("group_by", params.group_by or [], known)
    grouped = (
        set(params.group_by)
        if params.group_by is not None
        else {n for n, c in known.items() if c.kind == "categorical"}
    )
    for name in params.cuts:
        if known.get(name) is None or known[name].kind != "numeric" or name not in grouped:
            problems.append(
                (
                    ("cuts", name),
                    f"cuts for {name!r}, which is not a numeric covariate in group_by; add it "
                    "to group_by or remove its cuts",
                )
            )
    return problems


def check_cox_job(params: CoxParams, earlier: Sequence[EarlierStep]) -> JobProblems:
    """``cox``'s covariates and include against the job's cohort covariates."""
    known = _job_covariates(earlier)
    if known is None:
        return []
    return _unknown("covariates", params.covariates or [], known) + _unknown(
        "include", params.include, known
    )


def check_phenotypes_job(params: PhenotypeParams, earlier: Sequence[EarlierStep]) -> JobProblems:
    """``phenotypes``' covariates and weights against the job's cohort covariates."""
    known = _job_covariates(earlier)
    if known is None:
        return []
    clustered = {n: known[n] for n in params.covariates or known if n in known}
    return _unknown("covariates", params.covariates or [], known) + _unknown(
        "weights", list(params.weights), clustered, "the clustered covariates"
    )
