"""The galaxy catalog: one row per collection image."""

from __future__ import annotations

from pipeline.core.tables import TableSchema

__all__ = ["TABLES"]

TABLES: tuple[TableSchema, ...] = (
    TableSchema(
        name="catalog",
        description="One row per collection image: the galaxy preprocessing's verdict "
        "(stage `preprocess`), in the order of the `image` dimension.",
        columns={
            "image_id": "the image's identifier (as in `images`)",
            "status": "`kept` (its cutout is in `cutouts`) or `rejected`",
            "reason": "why rejected: invalid (unreadable input), non_finite (NaN/inf "
            "pixels), no_galaxy, overlap (a neighbour overlaps the galaxy), stripe "
            "(a dark imaging stripe crosses it); empty when kept",
            "x": "galaxy centre, column (px; the light's centroid when kept)",
            "y": "galaxy centre, row (px)",
            "sigma": "blob scale of the galaxy (px)",
            "radius": "galaxy radius, radius_factor * sigma (px)",
            "angle_deg": "major axis, degrees in [0, 180) counter-clockwise from +x with "
            "y up; the cutout is rotated to bring it along +x",
            "stripe_score": "how well the dark-in-bright pixels of the galaxy's crop lie "
            "on a line, in [0, 1] (rotation-invariant R^2)",
        },
    ),
)
