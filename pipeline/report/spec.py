"""Parameters of the ``report`` stage (pydantic only)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["ReportParams"]


class ReportParams(BaseModel):
    """Parameters of the ``report`` stage.

    Attributes
    ----------
    montage_images : int
        How many images the sample montage shows (0 for none).
    max_quarantine_rows : int
        How many quarantined files the report lists (all are in ``tables/quarantine.parquet``).
    """

    model_config = ConfigDict(extra="forbid")

    montage_images: int = Field(16, ge=0, le=400)
    max_quarantine_rows: int = Field(50, ge=0)
