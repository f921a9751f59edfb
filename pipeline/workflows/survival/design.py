"""Model matrices from a cohort frame: numeric covariates as they are, categories one-hot."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from pipeline.errors import ParameterError
from pipeline.workflows.survival.spec import Covariate

__all__ = ["design_matrix", "term_name", "term_variables"]


def term_name(covariate: str, level: str) -> str:
    """The design column of one category level, ``name[level]``."""
    return f"{covariate}[{level}]"


def _levels(cov: Covariate) -> list[str]:
    if cov.levels is None:
        raise ParameterError(
            f"covariate {cov.name!r} has no resolved levels; read covariates from the cohort "
            "record (models/cohort.json), which resolves them"
        )
    return list(cov.levels.values())


def term_variables(covariates: Sequence[Covariate]) -> dict[str, str]:
    """Design column -> the covariate it comes from, in design column order."""
    out: dict[str, str] = {}
    for cov in covariates:
        if cov.kind == "numeric":
            out[cov.name] = cov.name
            continue
        ref = cov.reference or _levels(cov)[0]
        for level in _levels(cov):
            if level != ref:
                out[term_name(cov.name, level)] = cov.name
    return out


def design_matrix(frame: pd.DataFrame, covariates: Sequence[Covariate]) -> pd.DataFrame:
    """The covariates of ``frame`` as a float matrix with treatment-coded categories.

    Parameters
    ----------
    frame : pandas.DataFrame, shape (n_patients, ...)
        A cohort frame (:class:`pipeline.workflows.survival.cohort.Cohort`): numeric covariates as
        float, categorical ones as pandas Categoricals of their labels.
    covariates : sequence of Covariate
        Resolved covariates (levels and reference set), in the order of the columns wanted.

    Returns
    -------
    pandas.DataFrame, shape (n_patients, n_terms)
        float64, same index. A numeric covariate is one column; a categorical one gives a
        0/1 column ``name[level]`` per level other than its reference.
    """
    cols: dict[str, np.ndarray] = {}
    for cov in covariates:
        values = frame[cov.name]
        if cov.kind == "numeric":
            cols[cov.name] = values.to_numpy(dtype=np.float64)
            continue
        ref = cov.reference or _levels(cov)[0]
        text = values.astype("object").to_numpy()
        for level in _levels(cov):
            if level != ref:
                cols[term_name(cov.name, level)] = (text == level).astype(np.float64)
    return pd.DataFrame(cols, index=frame.index)
