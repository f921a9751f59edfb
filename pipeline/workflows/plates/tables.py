"""The plate workflow's tables: per-image QC and features, per-well profiles."""

from __future__ import annotations

from pipeline.core.tables import TableSchema
from pipeline.workflows.plates.spec import (
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
)
