"""The plate workflow's tables: per-image QC and features, per-well profiles."""

from __future__ import annotations

from pipeline.core.tables import TableSchema
from pipeline.workflows.plates.efficacy_spec import (
    DOSE_RESPONSE_TABLE,
    EFFICACY_MODELS_TABLE,
    EFFICACY_MORPHOLOGY_TABLE,
    EFFICACY_TABLE,
    EFFICACY_WELLS_TABLE,
)
from pipeline.workflows.plates.spec import (
    CROPS_TABLE,
    FEATURES_TABLE,
    PROFILES_NORMALIZED_TABLE,
    PROFILES_TABLE,
    QC_TABLE,
)

__all__ = ["FEATURE_DOCS", "TABLES"]

#: The spheroid features (CellProfiler's names; :mod:`pipeline.workflows.plates.measure`
#: computes them, with the definitions in its docstring). Lengths are um and areas um^2 when
#: ``spheroid_features.pixel_size_um`` is given, else px and px^2; intensities are on the
#: image scaled to [0, 1] by its dtype's range.
FEATURE_DOCS: dict[str, str] = {
    "AreaShape_Area": "spheroid area (px^2 or um^2)",
    "AreaShape_Perimeter": "spheroid perimeter (px or um)",
    "AreaShape_FormFactor": "circularity, 4 pi Area / Perimeter^2 (1 for a disc)",
    "AreaShape_Solidity": "Area / convex hull area",
    "AreaShape_Extent": "Area / bounding box area",
    "AreaShape_Eccentricity": "of the ellipse with the same second moments (0 a circle)",
    "AreaShape_EquivalentDiameter": "diameter of the disc of the same area (px or um)",
    "AreaShape_MajorAxisLength": "major axis of that ellipse (px or um)",
    "AreaShape_MinorAxisLength": "minor axis of that ellipse (px or um)",
    "AreaShape_MaxFeretDiameter": "longest caliper distance (px or um)",
    "Intensity_IntegratedIntensity": "sum of the spheroid's intensities",
    "Intensity_MeanIntensity": "mean intensity of the spheroid ([0, 1])",
    "Intensity_StdIntensity": "standard deviation of its intensities",
    "Intensity_MinIntensity": "minimum intensity",
    "Intensity_MaxIntensity": "maximum intensity",
    "Intensity_MedianIntensity": "median intensity",
    "Location_Center_X": "spheroid centroid, column (px)",
    "Location_Center_Y": "spheroid centroid, row (px)",
    "Debris_FragmentCount": "8-connected pieces of debris",
    "Debris_Area": "debris area (px^2 or um^2)",
    "Debris_AreaFraction": "Debris_Area / (Debris_Area + Area): 0 intact, towards 1 disintegrated",
    "Debris_SpreadRadius": "largest distance of debris from the spheroid centroid (px or um)",
}

_QC = {
    "valid": "the image could be decoded (false: quarantined at ingest, its well flagged)",
    "focus_score": "variance of the Laplacian of the flattened image around the spheroid "
    "(higher is sharper; NaN for an empty well)",
    "empty_well": "no spheroid near the well centre",
    "out_of_focus": "focus score a robust z-score below the plate's others",
    "touches_edge": "the spheroid reaches the image border (its measures are cut)",
    "multiple_bodies": "a second body of comparable size beside the spheroid",
    "ok": "valid and none of the flags",
}

_METADATA = {
    "Metadata_Plate": "plate name",
    "Metadata_Well": "well, e.g. B02",
    "Metadata_Day": "day of imaging (the thesis: drug on day 7, read-out on day 10)",
}

_TREATMENT = {
    "treatment": "drug or combination",
    "concentration": "concentration (in `unit`)",
    "unit": "concentration unit",
    "wells": "replicate wells over all plates",
    "score": "median well score (larger: more changed)",
    "score_lower": "lower end of the bootstrap percentile interval of the median",
    "score_upper": "upper end",
    "z": "robust z of the median against the untreated wells' scores",
    "p": "empirical one-sided p-value of the median against the untreated wells' scores",
    "rank": "1 = most like untreated; ties share a rank",
}

TABLES: tuple[TableSchema, ...] = (
    TableSchema(
        name=QC_TABLE,
        description="One row per image (stage `segment_spheroids`), in the order of `image`: "
        "its quality checks. The plate coordinates (plate, well, field, day) follow "
        "`image_id` when the collection has them.",
        columns={"image_id": "the image's identifier (as in `images`)", **_QC},
        open_columns=True,
    ),
    TableSchema(
        name=FEATURES_TABLE,
        description="One row per image (stage `spheroid_features`): the plate map's metadata "
        "as pycytominer's `Metadata_` columns, the QC verdict and the spheroid's features.",
        columns={
            "Metadata_ImageID": "the image's identifier",
            "Metadata_Valid": "the image could be decoded",
            "Metadata_QCOk": "the image passed every QC check",
            "Metadata_QCFlags": "the QC flags set, comma-separated ('invalid' if undecodable)",
            **FEATURE_DOCS,
        },
        open_columns=True,
    ),
    TableSchema(
        name=PROFILES_TABLE,
        description="One row per plate, well and day (stage `spheroid_profiles`): the "
        "well's fields aggregated (median by default, QC-passed fields only), then each "
        "feature's change from the well's baseline day as `<feature>_ChangeRatio` and "
        "`<feature>_ChangeDiff`. Other `Metadata_` columns are the plate map's (treatment, "
        "concentration, unit, group, row, column). pycytominer's normalize and "
        "feature_select take it as it is.",
        columns={
            **_METADATA,
            "Metadata_Fields": "images of the well that day",
            "Metadata_FieldsFailedQC": "of those, how many failed QC",
            **FEATURE_DOCS,
        },
        open_columns=True,
    ),
    TableSchema(
        name=PROFILES_NORMALIZED_TABLE,
        description="spheroid_profiles with every feature a robust z-score against the "
        "plate's control wells on the same day (pycytominer's mad_robustize: (x - median) / "
        "(1.4826 MAD)); NaN for a plate and day without control wells.",
        columns={**_METADATA, **FEATURE_DOCS},
        open_columns=True,
    ),
    TableSchema(
        name=CROPS_TABLE,
        description="One row per image (stage `spheroid_crops`), in the order of `image`: "
        "where its crop is centred, whether it is used, and the linear probe's label. "
        "`train_encoder`, `embed` and the probes select rows with "
        "`{table: spheroid_crops, where: ok}`.",
        columns={
            "image": "position along the `image` dimension",
            "image_id": "the image's identifier",
            "plate": "plate name",
            "well": "well, e.g. B02",
            "well_key": "plate/well: the unit a split keeps on one side",
            "day": "day of imaging",
            "field": "field (view) of the well",
            "group": "the plate map's group",
            "centre_x": "crop centre, column (px; NaN: no spheroid, the image centre used)",
            "centre_y": "crop centre, row (px)",
            "ok": "passed QC and has a spheroid: trained on, embedded and aggregated",
            "probe_group": "untreated, single or screening (the thesis' three groups); "
            "missing for other groups and for images not ok",
        },
    ),
    TableSchema(
        name=EFFICACY_TABLE,
        description="One row per treatment (stage `efficacy`, method 1): the median over its "
        "replicate wells and plates of the deviation of day 10 from the untreated time-series "
        "model's prediction, ranked from 1 (like untreated) to the most changed.",
        columns=_TREATMENT
        | {
            "score_l2": "median L2 deviation of its wells",
            "score_cosine": "median cosine deviation (1 - cosine similarity) of its wells",
            "deterioration_pct": "median predicted deterioration of its wells (%, method 2)",
            "explosion": "median degree of explosion of its wells (0 intact)",
            "group": "intact or exploded: what most of its wells are (method 2)",
            "metric": "the deviation `score` is (l2 or cosine)",
            "method2_rank": "method 2's rank: intact treatments by deterioration, then "
            "exploded ones by degree of explosion (1 least affected)",
        },
    ),
    TableSchema(
        name=EFFICACY_MORPHOLOGY_TABLE,
        description="The interpretable baseline (stage `efficacy`): the same ranking from "
        "part 1's morphology alone, a well's score being the norm of its day-10 robust "
        "z-scores (area change, circularity change, intensity change) against the plate's "
        "untreated wells.",
        columns=_TREATMENT,
    ),
    TableSchema(
        name=EFFICACY_WELLS_TABLE,
        description="One row per plate and well with every day imaged (stage `efficacy`).",
        columns={
            "plate": "plate name",
            "well": "well, e.g. B02",
            "treatment": "drug or combination (`untreated` for controls)",
            "concentration": "concentration (in `unit`)",
            "unit": "concentration unit",
            "plate_group": "the plate map's group",
            "control": "an untreated well: trains the time-series model, gives the null",
            "fold": "cross-validation fold a control well was held out in (-1: not a control)",
            "score": "deviation of day 10 from the prediction (the ranked metric); controls "
            "are scored by a model that did not see them",
            "score_l2": "L2 deviation",
            "score_cosine": "cosine deviation, 1 - cosine similarity",
            "z": "robust z of `score` against the controls' scores",
            "p": "empirical one-sided p-value against the controls' scores",
            "morphology_score": "the morphology baseline's score",
            "morphology_z": "its robust z against the controls",
            "group": "intact or exploded (method 2, from the day-10 debris)",
            "exploded": "the spheroid disintegrated into debris",
            "explosion": "degree of explosion: sqrt(debris fraction x debris reach), 0 intact",
            "debris_fraction": "day-10 Debris_AreaFraction (median of the fields)",
            "debris_fragments": "day-10 Debris_FragmentCount",
            "debris_reach": "farthest debris from the body centre, in body radii",
            "viability": "the end-point viability read-out (NaN: not measured)",
            "deterioration_measured": "100 (1 - viability / median untreated viability of "
            "the plate), NaN without a read-out",
            "deterioration_pct": "predicted deterioration (%): out of fold for read-out wells",
            "method2_rank": "method 2's rank among treated wells (1 least affected)",
        },
    ),
    TableSchema(
        name=EFFICACY_MODELS_TABLE,
        description="The models the `efficacy` stage compared: each time-series candidate's "
        "out-of-fold error over control wells (the selected one marked), and the "
        "deterioration model.",
        columns={
            "model": "candidate, e.g. ridge(alpha=10), gru, mlp",
            "mse": "out-of-fold mean squared error per feature on control wells",
            "mse_persistence": "the same for predicting day 10 = the last observed day "
            "(day 7 with forecast rollout, day 9 with observed)",
            "folds": "cross-validation folds",
            "forecast": "rollout (days 8-10 predicted in turn from day 7) or observed "
            "(day 10 from the imaged days 7-9)",
            "selected": "the model used",
        },
        open_columns=True,
    ),
    TableSchema(
        name=DOSE_RESPONSE_TABLE,
        description="One row per drug (stage `efficacy`): a four-parameter logistic fit of "
        "the wells' scores against concentration, score = bottom + (top - bottom) / (1 + "
        "(EC50 / c)^hill); parameters NaN when not fitted.",
        columns={
            "treatment": "drug or combination",
            "unit": "concentration unit",
            "concentrations": "distinct concentrations",
            "wells": "wells fitted",
            "bottom": "score at zero dose",
            "top": "score at saturating dose",
            "ec50": "concentration of the half-maximal effect (in `unit`)",
            "hill": "Hill slope",
            "rmse": "root mean squared residual of the fit",
            "converged": "the fit converged inside its bounds",
            "status": "ok, too_few_concentrations or not_converged",
            "control_score": "median score of the untreated wells, for reference",
        },
    ),
)
