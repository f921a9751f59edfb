"""Survival and prognosis workflow (document 004): clinical tables -> Kaplan-Meier, Cox,
phenotypes, phenotype classifiers, external validation.

The stages are declared in :mod:`.workflow`; the functions here are the building blocks,
usable on their own with a pandas frame. Nothing is imported until a name is used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.core.lazy import attach

if TYPE_CHECKING:
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

#: The public names and the modules that define them (imported on first use).
_API = {
    "ClassifierParams": "pipeline.workflows.survival.classify",
    "Cohort": "pipeline.workflows.survival.cohort",
    "CohortParams": "pipeline.workflows.survival.spec",
    "CohortRecord": "pipeline.workflows.survival.spec",
    "CohortSource": "pipeline.workflows.survival.spec",
    "Condition": "pipeline.workflows.survival.spec",
    "Covariate": "pipeline.workflows.survival.spec",
    "ExternalSource": "pipeline.workflows.survival.spec",
    "MissingPolicy": "pipeline.workflows.survival.spec",
    "PhenotypeParams": "pipeline.workflows.survival.phenotypes",
    "cluster_phenotypes": "pipeline.workflows.survival.phenotypes",
    "design_matrix": "pipeline.workflows.survival.design",
    "evaluate_classifiers": "pipeline.workflows.survival.classify",
    "fit_cox": "pipeline.workflows.survival.cox",
    "gower_distance": "pipeline.workflows.survival.phenotypes",
    "harrell_c": "pipeline.workflows.survival.cox",
    "km_tables": "pipeline.workflows.survival.km",
    "load_cohort": "pipeline.workflows.survival.cohort",
    "load_external": "pipeline.workflows.survival.cohort",
    "multivariate_cox": "pipeline.workflows.survival.cox",
    "predict_phenotype": "pipeline.workflows.survival.classify",
    "read_source": "pipeline.workflows.survival.cohort",
    "univariate_cox": "pipeline.workflows.survival.cox",
}

__getattr__, __dir__ = attach(__name__, _API)

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
