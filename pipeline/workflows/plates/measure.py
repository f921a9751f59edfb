"""Morphology and intensity of one segmented spheroid, with CellProfiler's names.

The columns are named and defined as CellProfiler's ``MeasureObjectSizeShape`` and
``MeasureObjectIntensity`` (and the ``Location_`` columns of its object identification)
name and define them, so a profile table is read by pycytominer and by people who know
CellProfiler without a translation table. As in CellProfiler, the shape measures come from
:func:`skimage.measure.regionprops`, and intensities are read from the image scaled to
[0, 1] by its dtype's range (uint8 / 255, uint16 / 65535; float images as they are).

Columns (:data:`FEATURE_COLUMNS`, in this order). Given ``pixel_size_um`` (``s``), the
lengths (:data:`LENGTH_COLUMNS`) are multiplied by ``s`` and the areas
(:data:`AREA_COLUMNS`) by ``s**2``: the unit in parentheses. Nothing else changes.

==================================  ==========================================  ============
column                              meaning                                     unit
==================================  ==========================================  ============
``AreaShape_Area``                  pixels of the spheroid (label 1)            px^2 (um^2)
``AreaShape_Perimeter``             regionprops ``perimeter`` (4-connected      px (um)
                                    contour, as CellProfiler)
``AreaShape_FormFactor``            4 pi Area / Perimeter^2: 1 for a disc       --
                                    (about 0.92 at r = 50 px, the perimeter's
                                    digitisation), less for irregular outlines
``AreaShape_Solidity``              Area / convex hull area                     --
``AreaShape_Extent``                Area / bounding box area                    --
``AreaShape_Eccentricity``          of the ellipse with the same second         --
                                    moments: 0 a circle, towards 1 a line
``AreaShape_EquivalentDiameter``    diameter of the disc of the same area       px (um)
``AreaShape_MajorAxisLength``       major axis of that ellipse                  px (um)
``AreaShape_MinorAxisLength``       minor axis of that ellipse                  px (um)
``AreaShape_MaxFeretDiameter``      longest caliper distance                    px (um)
``Intensity_IntegratedIntensity``   sum of the spheroid's intensities           [0, 1] sum
``Intensity_MeanIntensity``         their mean                                  [0, 1]
``Intensity_StdIntensity``          their standard deviation (population)       [0, 1]
``Intensity_MinIntensity``          their minimum                               [0, 1]
``Intensity_MaxIntensity``          their maximum                               [0, 1]
``Intensity_MedianIntensity``       their median                                [0, 1]
``Location_Center_X``               centroid column of the spheroid (image      px
                                    coordinates: never scaled)
``Location_Center_Y``               centroid row of the spheroid                px
``Debris_FragmentCount``            8-connected pieces of debris (label 2)      count
``Debris_Area``                     pixels of debris                            px^2 (um^2)
``Debris_AreaFraction``             Debris_Area / (Debris_Area + Area): 0       --
                                    intact, towards 1 disintegrated
``Debris_SpreadRadius``             largest distance of a debris pixel from     px (um)
                                    the spheroid's centroid (0: no debris)
==================================  ==========================================  ============

Missing objects: without a spheroid (no label-1 pixel) every ``AreaShape_``, ``Intensity_``
and ``Location_`` column and ``Debris_SpreadRadius`` are NaN (there is nothing to measure,
which is not the same as a size of 0); ``Debris_FragmentCount`` and ``Debris_Area`` still
count the debris, and ``Debris_AreaFraction`` is NaN only when there is neither. All
label-1 pixels are one object, even when a label image from elsewhere splits them.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt
import scipy.ndimage as ndi
from skimage.color import rgb2gray
from skimage.measure import regionprops
from skimage.util import img_as_float

from pipeline.errors import ParameterError

__all__ = [
    "AREA_COLUMNS",
    "FEATURE_COLUMNS",
    "LENGTH_COLUMNS",
    "measure_spheroid",
    "scale_to_micrometres",
]

log = logging.getLogger(__name__)

#: Every column :func:`measure_spheroid` returns, in table order.
FEATURE_COLUMNS: Final = (
    "AreaShape_Area",
    "AreaShape_Perimeter",
    "AreaShape_FormFactor",
    "AreaShape_Solidity",
    "AreaShape_Extent",
    "AreaShape_Eccentricity",
    "AreaShape_EquivalentDiameter",
    "AreaShape_MajorAxisLength",
    "AreaShape_MinorAxisLength",
    "AreaShape_MaxFeretDiameter",
    "Intensity_IntegratedIntensity",
    "Intensity_MeanIntensity",
    "Intensity_StdIntensity",
    "Intensity_MinIntensity",
    "Intensity_MaxIntensity",
    "Intensity_MedianIntensity",
    "Location_Center_X",
    "Location_Center_Y",
    "Debris_FragmentCount",
    "Debris_Area",
    "Debris_AreaFraction",
    "Debris_SpreadRadius",
)

#: The columns multiplied by ``pixel_size_um`` (reported in um when it is given).
LENGTH_COLUMNS: Final = (
    "AreaShape_Perimeter",
    "AreaShape_EquivalentDiameter",
    "AreaShape_MajorAxisLength",
    "AreaShape_MinorAxisLength",
    "AreaShape_MaxFeretDiameter",
    "Debris_SpreadRadius",
)
#: The columns multiplied by ``pixel_size_um ** 2`` (reported in um^2 when it is given).
AREA_COLUMNS: Final = ("AreaShape_Area", "Debris_Area")

SPHEROID, DEBRIS = 1, 2


class Columns(Protocol):
    """Anything indexed by column name: a row (dict) or a table (DataFrame)."""

    def __getitem__(self, key: str, /) -> Any: ...

    def __setitem__(self, key: str, value: Any, /) -> None: ...


def _intensity(image: npt.ArrayLike, shape: tuple[int, ...]) -> npt.NDArray[np.float64]:
    """The image as gray float64 on CellProfiler's scale, checked against the labels."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim == 3 and arr.shape[-1] in (3, 4) and arr.shape[:2] == shape:
        # rgb2gray scales integers to [0, 1] itself; an alpha channel carries no intensity.
        gray = rgb2gray(arr[..., :3])
    elif arr.ndim == 2:
        if arr.dtype == bool:
            arr = arr.astype(np.uint8)
        gray = img_as_float(arr)
    else:
        raise ParameterError(
            f"image of shape {arr.shape} is neither (y, x) nor (y, x, 3|4) RGB; pass one "
            "gray or colour image per call"
        )
    if gray.shape != shape:
        raise ParameterError(
            f"image of shape {gray.shape[:2]} and labels of shape {shape} differ; pass the "
            "labels segment_spheroid returned for this image"
        )
    return np.asarray(gray, dtype=np.float64)


def measure_spheroid(
    image: npt.ArrayLike,
    labels: npt.ArrayLike,
    pixel_size_um: float | None = None,
) -> dict[str, float]:
    """Shape, intensity and debris measures of one well's spheroid.

    Parameters
    ----------
    image : array_like, shape (y, x) or (y, x, 1|3|4)
        The bright-field image the labels were segmented from (uint8, uint16 or float;
        RGB is converted to gray). Integer intensities are scaled to [0, 1] by the
        dtype's range, as CellProfiler does.
    labels : array_like of int, shape (y, x)
        0 background, 1 spheroid, 2 debris, as
        :func:`~pipeline.workflows.plates.segment.segment_spheroid` returns them.
    pixel_size_um : float, optional
        Side of one pixel (um). Given, the :data:`LENGTH_COLUMNS` are in um and the
        :data:`AREA_COLUMNS` in um^2; None keeps px and px^2.

    Returns
    -------
    dict of str to float
        One value per name of :data:`FEATURE_COLUMNS`, in that order (see the module's
        table for meanings and units). NaN where there is no spheroid to measure.

    Raises
    ------
    ParameterError
        The image and labels differ in shape, the labels are not 2-D, or
        ``pixel_size_um`` is not positive.
    """
    lab = np.asarray(labels)
    if lab.ndim != 2:
        raise ParameterError(f"labels of shape {lab.shape} are not one (y, x) label image")
    if pixel_size_um is not None and not (math.isfinite(pixel_size_um) and pixel_size_um > 0):
        raise ParameterError(
            f"pixel_size_um={pixel_size_um!r} is not a positive number of micrometres; "
            "pass the pixel side or None for pixels"
        )
    gray = _intensity(image, lab.shape)
    spheroid = lab == SPHEROID
    debris = lab == DEBRIS

    out = dict.fromkeys(FEATURE_COLUMNS, math.nan)
    debris_area = int(np.count_nonzero(debris))
    out["Debris_Area"] = float(debris_area)
    out["Debris_FragmentCount"] = float(
        ndi.label(debris, structure=np.ones((3, 3), bool))[1] if debris_area else 0
    )
    area = int(np.count_nonzero(spheroid))
    if area + debris_area:
        out["Debris_AreaFraction"] = debris_area / (area + debris_area)

    if area:
        props = regionprops(spheroid.astype(np.uint8), intensity_image=gray)[0]
        values = gray[spheroid]
        perimeter = float(props.perimeter)
        cy, cx = (float(c) for c in props.centroid)
        out.update(
            {
                "AreaShape_Area": float(props.area),
                "AreaShape_Perimeter": perimeter,
                # CellProfiler's definition; a one-pixel object has no perimeter in
                # regionprops, and no meaningful form factor either.
                "AreaShape_FormFactor": (
                    4.0 * math.pi * float(props.area) / perimeter**2 if perimeter else math.nan
                ),
                "AreaShape_Solidity": float(props.solidity),
                "AreaShape_Extent": float(props.extent),
                "AreaShape_Eccentricity": float(props.eccentricity),
                "AreaShape_EquivalentDiameter": float(props.equivalent_diameter_area),
                "AreaShape_MajorAxisLength": float(props.axis_major_length),
                "AreaShape_MinorAxisLength": float(props.axis_minor_length),
                "AreaShape_MaxFeretDiameter": float(props.feret_diameter_max),
                "Intensity_IntegratedIntensity": float(values.sum()),
                "Intensity_MeanIntensity": float(props.intensity_mean),
                "Intensity_StdIntensity": float(values.std()),
                "Intensity_MinIntensity": float(props.intensity_min),
                "Intensity_MaxIntensity": float(props.intensity_max),
                "Intensity_MedianIntensity": float(np.median(values)),
                "Location_Center_X": cx,
                "Location_Center_Y": cy,
            }
        )
        if debris_area:
            ys, xs = np.nonzero(debris)
            out["Debris_SpreadRadius"] = float(np.sqrt(((ys - cy) ** 2 + (xs - cx) ** 2).max()))
        else:
            out["Debris_SpreadRadius"] = 0.0
    else:
        log.debug("no spheroid pixels: shape and intensity measures are NaN")

    if pixel_size_um is not None:
        scale_to_micrometres(out, pixel_size_um)
    return out


def scale_to_micrometres(features: Columns, pixel_size_um: float) -> None:
    """Turn measures in px into um (in place): :data:`LENGTH_COLUMNS` times
    ``pixel_size_um``, :data:`AREA_COLUMNS` times its square.

    Parameters
    ----------
    features : dict or DataFrame
        Column name -> value (a float, or a column): a row of :func:`measure_spheroid` in
        px, or a table of them.
    pixel_size_um : float
        Side of one pixel (um).
    """
    for name in LENGTH_COLUMNS:
        features[name] = features[name] * pixel_size_um
    for name in AREA_COLUMNS:
        features[name] = features[name] * pixel_size_um**2
