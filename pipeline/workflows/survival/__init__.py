"""Survival and prognosis workflow (seed 004): clinical tables -> Kaplan-Meier, Cox,
phenotypes, phenotype classifiers, external validation.

The stages are registered in :mod:`pipeline.core.registry`; the functions here are the building
blocks, usable on their own with a pandas frame.
"""

from pipeline.workflows.survival.classify import (
    ClassifierParams,
    evaluate_classifiers,
    predict_phenotype,
)
from pipeline.workflows.survival.cohort import Cohort, load_cohort, load_external, read_source
from pipeline.workflows.survival.cox import fit_cox, harrell_c, multivariate_cox, univariate_cox
from pipeline.workflows.survival.design import design_matrix
from pipeline.workflows.survival.km import km_tables
from pipeline.workflows.survival.phenotypes import (
    PhenotypeParams,
    cluster_phenotypes,
    gower_distance,
)
from pipeline.workflows.survival.spec import (
    CohortParams,
    CohortRecord,
    CohortSource,
    Condition,
    Covariate,
    ExternalSource,
    MissingPolicy,
)

__all__ = [
    "ClassifierParams",
    "Cohort",
    "CohortParams",
    "CohortRecord",
    "CohortSource",
    "Condition",
    "Covariate",
    "ExternalSource",
    "MissingPolicy",
    "PhenotypeParams",
    "cluster_phenotypes",
    "design_matrix",
    "evaluate_classifiers",
    "fit_cox",
    "gower_distance",
    "harrell_c",
    "km_tables",
    "load_cohort",
    "load_external",
    "multivariate_cox",
    "predict_phenotype",
    "read_source",
    "univariate_cox",
]
