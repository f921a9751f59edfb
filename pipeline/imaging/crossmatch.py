"""Cross-matching a detection catalog against a reference catalog, and the scores it gives.

:func:`match_positions` pairs detections with reference sources one-to-one within a radius;
:func:`sky_offsets_arcsec` puts sky coordinates on a tangent plane so that sky catalogs can be
matched the same way; :func:`completeness_purity` and :func:`overall_scores` turn a match into
completeness (recall) and purity (precision), per magnitude bin and overall.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from pipeline.errors import ParameterError

__all__ = [
    "DEFAULT_BIN_WIDTH",
    "Match",
    "completeness_purity",
    "match_positions",
    "overall_scores",
    "sky_offsets_arcsec",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.intp]
BoolArray = npt.NDArray[np.bool_]

#: Width of the default magnitude bins (mag); their edges are multiples of it.
DEFAULT_BIN_WIDTH = 0.5
#: Arcseconds in one radian.
_ARCSEC_PER_RAD = 180.0 * 3600.0 / math.pi

#: Columns of :func:`completeness_purity`'s table and their dtypes, in order.
_SCORE_COLUMNS = {
    "mag_lo": np.float64,
    "mag_hi": np.float64,
    "n_reference": np.int64,
    "n_recovered": np.int64,
    "completeness": np.float64,
    "n_detected": np.int64,
    "n_true": np.int64,
    "purity": np.float64,
}


@dataclass(frozen=True, eq=False)
class Match:
    """A one-to-one match of detections with reference sources.

    Attributes
    ----------
    det_index : numpy.ndarray of intp, shape (k,)
        Row of each matched detection in ``det_xy``, increasing (no value repeated).
    ref_index : numpy.ndarray of intp, shape (k,)
        Row of the reference source matched to ``det_index[i]`` (no value repeated).
    distance : numpy.ndarray of float64, shape (k,)
        Euclidean distance of each pair, in the units of the positions (pixels, arcsec).
    det_matched : numpy.ndarray of bool, shape (n_det,)
        Whether each detection has a match (a true detection).
    ref_matched : numpy.ndarray of bool, shape (n_ref,)
        Whether each reference source has a match (recovered).
    radius : float
        The matching radius used, in the units of the positions.
    """

    det_index: IntArray
    ref_index: IntArray
    distance: FloatArray
    det_matched: BoolArray
    ref_matched: BoolArray
    radius: float

    @property
    def n_matched(self) -> int:
        """Number of matched pairs, ``k``."""
        return int(self.det_index.size)

    @property
    def ref_of_det(self) -> IntArray:
        """numpy.ndarray of intp, shape (n_det,): each detection's reference row, -1 if none."""
        out = np.full(self.det_matched.size, -1, dtype=np.intp)
        out[self.det_index] = self.ref_index
        return out

    @property
    def det_of_ref(self) -> IntArray:
        """numpy.ndarray of intp, shape (n_ref,): each reference's detection row, -1 if none."""
        out = np.full(self.ref_matched.size, -1, dtype=np.intp)
        out[self.ref_index] = self.det_index
        return out


def match_positions(det_xy: npt.ArrayLike, ref_xy: npt.ArrayLike, radius: float) -> Match:
    """Match detections to reference sources one-to-one within ``radius``.

    Every pair closer than or at ``radius`` is a candidate; candidates are accepted greedily by
    increasing distance (ties by detection row, then reference row, so the result does not
    depend on anything but the inputs), skipping any whose detection or reference source is
    already taken. The result is therefore maximal: no unmatched detection lies within
    ``radius`` of an unmatched reference source.

    Parameters
    ----------
    det_xy : array_like of float, shape (n_det, 2)
        Detection positions (x, y): pixels, or tangent-plane offsets in arcsec from
        :func:`sky_offsets_arcsec`. Rows with a NaN or infinite coordinate match nothing.
        An empty sequence is read as shape (0, 2).
    ref_xy : array_like of float, shape (n_ref, 2)
        Reference positions, in the same units and frame as ``det_xy``.
    radius : float
        Largest separation of a matched pair, in the units of the positions; > 0.

    Returns
    -------
    Match
        The pairs, sorted by detection row, and the matched masks of both catalogs.

    Raises
    ------
    ParameterError
        ``radius`` is not a finite number > 0, or a position array is not of shape (n, 2).
    """
    from scipy.spatial import cKDTree

    number = isinstance(radius, int | float | np.integer | np.floating)
    if isinstance(radius, bool) or not number or not (math.isfinite(radius) and radius > 0):
        raise ParameterError(
            f"matching radius is {_show(radius)}; expected a finite number > 0 in the units of "
            "the positions (pixels, or arcsec for sky offsets); pass e.g. radius=2.0"
        )
    det = _positions(det_xy, "det_xy")
    ref = _positions(ref_xy, "ref_xy")
    det_ok = np.flatnonzero(np.isfinite(det).all(axis=1))
    ref_ok = np.flatnonzero(np.isfinite(ref).all(axis=1))
    n_det, n_ref = len(det), len(ref)
    if det_ok.size and ref_ok.size:
        pairs = cKDTree(det[det_ok]).sparse_distance_matrix(
            cKDTree(ref[ref_ok]), float(radius), output_type="ndarray"
        )
        cand_det = det_ok[pairs["i"].astype(np.intp)]
        cand_ref = ref_ok[pairs["j"].astype(np.intp)]
    else:
        cand_det = cand_ref = np.zeros(0, dtype=np.intp)
    # Recomputed here so that the distances (and their ties) do not depend on the tree.
    diff = det[cand_det] - ref[cand_ref]
    dist = np.hypot(diff[:, 0], diff[:, 1])
    keep = dist <= radius
    cand_det, cand_ref, dist = cand_det[keep], cand_ref[keep], dist[keep]
    order = np.lexsort((cand_ref, cand_det, dist))
    det_matched = np.zeros(n_det, dtype=bool)
    ref_matched = np.zeros(n_ref, dtype=bool)
    accepted = []
    for k in order.tolist():
        i, j = cand_det[k], cand_ref[k]
        if det_matched[i] or ref_matched[j]:
            continue
        det_matched[i] = ref_matched[j] = True
        accepted.append(k)
    chosen = np.asarray(accepted, dtype=np.intp)
    chosen = chosen[np.argsort(cand_det[chosen], kind="stable")]
    return Match(
        det_index=cand_det[chosen].astype(np.intp),
        ref_index=cand_ref[chosen].astype(np.intp),
        distance=dist[chosen].astype(np.float64),
        det_matched=det_matched,
        ref_matched=ref_matched,
        radius=float(radius),
    )


def _show(value: object) -> str:
    """``repr`` of a value, numpy scalars as the Python number they hold."""
    return repr(value.item() if isinstance(value, np.generic) else value)


def _positions(xy: npt.ArrayLike, name: str) -> FloatArray:
    """``xy`` as a float64 (n, 2) array; an empty input is (0, 2)."""
    arr = np.asarray(xy, dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 2), dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ParameterError(
            f"{name} has shape {arr.shape}; expected (n, 2), one (x, y) row per source; "
            "stack the coordinates with numpy.column_stack((x, y))"
        )
    return arr


def sky_offsets_arcsec(
    ra: npt.ArrayLike, dec: npt.ArrayLike, ra0: float, dec0: float
) -> FloatArray:
    """Gnomonic (tangent-plane) offsets of sky positions from a centre, in arcsec.

    Within a field a few degrees across, Euclidean distances between the offsets equal the
    angular separations to well under a milliarcsecond per arcsecond, so sky catalogs can be
    matched with :func:`match_positions` and a radius in arcsec.

    Parameters
    ----------
    ra, dec : array_like of float, shape (n,)
        Right ascension and declination, degrees.
    ra0, dec0 : float
        The tangent point (e.g. the field centre), degrees.

    Returns
    -------
    numpy.ndarray of float64, shape (n, 2)
        Columns (xi, eta): the offset towards east (increasing RA) and towards north
        (increasing dec), arcsec. NaN for positions 90 degrees or more from the tangent
        point (they have no gnomonic projection) and for NaN inputs.

    Raises
    ------
    ParameterError
        ``ra`` and ``dec`` differ in shape, or the tangent point is not finite.
    """
    ra_arr = np.atleast_1d(np.asarray(ra, dtype=np.float64))
    dec_arr = np.atleast_1d(np.asarray(dec, dtype=np.float64))
    if ra_arr.shape != dec_arr.shape or ra_arr.ndim != 1:
        raise ParameterError(
            f"ra has shape {ra_arr.shape} and dec {dec_arr.shape}; expected two arrays of "
            "one shape (n,), one value per source, in degrees"
        )
    if not (math.isfinite(ra0) and math.isfinite(dec0)):
        raise ParameterError(
            f"tangent point is ({_show(ra0)}, {_show(dec0)}); expected finite degrees, e.g. the "
            "median ra and dec of the catalog"
        )
    a = np.radians(ra_arr - ra0)
    d = np.radians(dec_arr)
    d0 = math.radians(dec0)
    cos_c = math.sin(d0) * np.sin(d) + math.cos(d0) * np.cos(d) * np.cos(a)
    with np.errstate(invalid="ignore", divide="ignore"):
        xi = np.cos(d) * np.sin(a) / cos_c
        eta = (math.cos(d0) * np.sin(d) - math.sin(d0) * np.cos(d) * np.cos(a)) / cos_c
    out = np.column_stack((xi, eta)) * _ARCSEC_PER_RAD
    out[~(cos_c > 0)] = np.nan
    return out


def completeness_purity(
    ref_mag: npt.ArrayLike,
    ref_matched: npt.ArrayLike,
    det_mag: npt.ArrayLike,
    det_matched: npt.ArrayLike,
    *,
    bins: npt.ArrayLike | float | None = None,
) -> pd.DataFrame:
    """Completeness and purity per magnitude bin.

    Completeness is binned by the reference magnitude (of the reference sources in a bin, the
    fraction recovered), purity by the detection magnitude (of the detections in a bin, the
    fraction matched to a reference source). Sources with a NaN (or infinite) magnitude,
    or outside the bins, are in no bin, though they still count in the overall scores of
    :func:`overall_scores`.

    Parameters
    ----------
    ref_mag : array_like of float, shape (n_ref,)
        Reference magnitudes, mag.
    ref_matched : array_like of bool, shape (n_ref,)
        Whether each reference source was recovered (:attr:`Match.ref_matched`).
    det_mag : array_like of float, shape (n_det,)
        Detection magnitudes, mag (in the reference's system for the bins to agree).
    det_matched : array_like of bool, shape (n_det,)
        Whether each detection was matched (:attr:`Match.det_matched`).
    bins : array_like of float, or float, optional
        Increasing bin edges, mag (each bin ``[lo, hi)``, the last also holding ``hi``, as in
        :func:`numpy.histogram`); or a positive bin width, mag. Default:
        :data:`DEFAULT_BIN_WIDTH`-wide bins with edges at multiples of the width, covering
        every finite magnitude of both catalogs.

    Returns
    -------
    pandas.DataFrame
        One row per bin, columns ``mag_lo``, ``mag_hi`` (mag), ``n_reference``,
        ``n_recovered``, ``completeness`` (``n_recovered / n_reference``, NaN where
        ``n_reference`` is 0), ``n_detected``, ``n_true`` (detections matched), ``purity``
        (``n_true / n_detected``, NaN where ``n_detected`` is 0). No rows when ``bins`` is
        None and no magnitude is finite.

    Raises
    ------
    ParameterError
        A magnitude array and its mask differ in length, or ``bins`` is not a positive width
        or at least two increasing finite edges.
    """
    rmag, rhit = _mags_and_mask(ref_mag, ref_matched, "ref")
    dmag, dhit = _mags_and_mask(det_mag, det_matched, "det")
    rfin, dfin = np.isfinite(rmag), np.isfinite(dmag)
    rmag, rhit, dmag, dhit = rmag[rfin], rhit[rfin], dmag[dfin], dhit[dfin]
    edges = _edges(bins, np.concatenate((rmag, dmag)))
    if edges.size == 0:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in _SCORE_COLUMNS.items()})
    n_ref = np.histogram(rmag, edges)[0]
    n_rec = np.histogram(rmag[rhit], edges)[0]
    n_det = np.histogram(dmag, edges)[0]
    n_true = np.histogram(dmag[dhit], edges)[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        completeness = np.where(n_ref > 0, n_rec / np.maximum(n_ref, 1), np.nan)
        purity = np.where(n_det > 0, n_true / np.maximum(n_det, 1), np.nan)
    return pd.DataFrame(
        {
            "mag_lo": edges[:-1],
            "mag_hi": edges[1:],
            "n_reference": n_ref.astype(np.int64),
            "n_recovered": n_rec.astype(np.int64),
            "completeness": completeness.astype(np.float64),
            "n_detected": n_det.astype(np.int64),
            "n_true": n_true.astype(np.int64),
            "purity": purity.astype(np.float64),
        }
    )


def _mags_and_mask(mag: npt.ArrayLike, mask: npt.ArrayLike, name: str) -> tuple[Any, Any]:
    """Float64 magnitudes and a bool mask of one length."""
    mag_arr = np.asarray(mag, dtype=np.float64).reshape(-1)
    mask_arr = np.asarray(mask).reshape(-1)
    if mask_arr.size and mask_arr.dtype != np.bool_:
        raise ParameterError(
            f"{name}_matched has dtype {mask_arr.dtype}; expected booleans (one per source); "
            f"pass Match.{name}_matched"
        )
    if mag_arr.size != mask_arr.size:
        raise ParameterError(
            f"{name}_mag has {mag_arr.size} values but {name}_matched {mask_arr.size}; "
            "expected one magnitude and one matched flag per source, in the same order"
        )
    return mag_arr, mask_arr.astype(bool)


def _edges(bins: npt.ArrayLike | float | None, mags: FloatArray) -> FloatArray:
    """The bin edges: given, or of the given / default width around ``mags`` (finite)."""
    if bins is None or np.ndim(bins) == 0:
        width = DEFAULT_BIN_WIDTH if bins is None else float(bins)  # type: ignore[arg-type]
        if not (math.isfinite(width) and width > 0):
            raise ParameterError(
                f"bins is {_show(bins)}; expected a positive bin width in mag, increasing edges, "
                "or None for 0.5-mag bins"
            )
        if mags.size == 0:
            return np.zeros(0, dtype=np.float64)
        lo = math.floor(float(mags.min()) / width)
        # One past the largest magnitude's bin, so that it lies inside [lo, hi).
        hi = math.floor(float(mags.max()) / width) + 1
        return np.arange(lo, hi + 1, dtype=np.float64) * width
    edges = np.asarray(bins, dtype=np.float64).reshape(-1)
    if edges.size < 2 or not np.isfinite(edges).all() or not (np.diff(edges) > 0).all():
        raise ParameterError(
            f"bins is {edges.tolist()!r}; expected at least two finite, strictly increasing "
            "edges in mag, e.g. numpy.arange(18, 26.5, 0.5)"
        )
    return edges


def overall_scores(
    match: Match, n_det: int | None = None, n_ref: int | None = None
) -> dict[str, float]:
    """Recall (completeness), precision (purity) and F1 of a whole match.

    Parameters
    ----------
    match : Match
        The result of :func:`match_positions`.
    n_det : int, optional
        Number of detections; default ``match.det_matched.size``. Give it when detections
        left out of the match (e.g. outside the reference's footprint) should still count.
    n_ref : int, optional
        Number of reference sources; default ``match.ref_matched.size``.

    Returns
    -------
    dict of str to float
        ``n_detected``, ``n_reference``, ``n_matched`` (counts, int), ``recall``
        (``n_matched / n_reference``), ``precision`` (``n_matched / n_detected``), ``f1``
        (their harmonic mean; 0 when both are 0) and ``median_distance`` (median separation
        of the pairs, in the units of the positions). Ratios are NaN where their denominator
        is 0, as is ``median_distance`` without pairs.

    Raises
    ------
    ParameterError
        ``n_det`` or ``n_ref`` is smaller than the number of matched pairs.
    """
    k = match.n_matched
    n_d = match.det_matched.size if n_det is None else int(n_det)
    n_r = match.ref_matched.size if n_ref is None else int(n_ref)
    for name, value in (("n_det", n_d), ("n_ref", n_r)):
        if value < k:
            raise ParameterError(
                f"{name} is {value}, fewer than the {k} matched pairs; expected the number "
                "of sources of that catalog (at least the matched ones)"
            )
    recall = k / n_r if n_r else math.nan
    precision = k / n_d if n_d else math.nan
    if math.isnan(recall) or math.isnan(precision):
        f1 = math.nan
    elif recall + precision == 0:
        f1 = 0.0
    else:
        f1 = 2 * recall * precision / (recall + precision)
    return {
        "n_detected": n_d,
        "n_reference": n_r,
        "n_matched": k,
        "recall": recall,
        "precision": precision,
        "f1": f1,
        "median_distance": float(np.median(match.distance)) if k else math.nan,
    }
