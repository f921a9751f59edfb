"""Baseline for the speed benchmark: the notebook's per-image galaxy preprocessing, as written.

This is a port of the Preprocessing section of the seed notebook
(``shared/seeds/000_3c33afafd697f07d.txt``: ``Galaxy``, ``cropp_image``, ``overlap``,
``find_galaxy``, ``check_for_black_stripe``, ``get_covariance_matrix``,
``get_rotation_on_image``, ``filter_image`` and ``preprocess_image``). It is "a plain serial
loop running the notebook's method as written": full-resolution ``blob_doh`` with the notebook's
parameters (``threshold=0.004, max_sigma=100, overlap=1``), then its steps, with the same nested
per-pixel Python loops, the same crop / rotate / resize and the same thresholds.

It is meant **only as the speed baseline** that the fast implementation is compared against. It
reproduces the notebook's method *including its known bugs*, which are deliberately not fixed:

* **x/y swapped when cropping**: ``Galaxy`` holds ``x = column, y = row`` (``Galaxy(b[1], b[0],
  b[2])``) but ``cropp_image`` slices ``image[x - r : x + r, y - r : y + r]``, i.e. it indexes
  rows by the column coordinate, so the crop is mirrored about the diagonal and misses the galaxy
  unless it sits near the diagonal.
* **negative crop bounds wrap**: ``int(center - radius)`` can be negative; a negative slice start
  counts from the end of the axis instead of clipping at 0, giving an empty (or wrong) crop.
* **eigenvector rows vs columns**: ``np.linalg.eigh`` returns the eigenvectors as *columns*, but
  ``get_rotation_on_image`` reads *rows* (``eigenvectors[max_eigen_index]``), and it averages one
  component of each eigenvector (``arccos((v[i][0] + v[j][1]) / 2)``) to get the angle.
* **equal eigenvalues crash**: ``max_eigen_index, = np.where(np.isclose(...))[0]`` fails to
  unpack when both eigenvalues are (close to) equal, e.g. for a round galaxy (guarded here).
* **the closest-point overlap test**: ``overlap`` takes the point of the *lower* galaxy's circle
  (larger row) nearest the other centre and tests whether it lies inside the other circle, i.e.
  ``|D - r_lower| < r_upper``. It misses a small blob lying wholly inside the galaxy (and the
  galaxy inside a big blob), is asymmetric in the two circles, truncates the point to ``int``,
  and its ``if``/``else`` on ``alpha`` has two identical branches.
* **identical-centre blobs are never compared**: ``blob.center != found_galaxy.center`` skips the
  galaxy itself but also any other blob at the same centre with a different sigma.
* **LoG radius for a DoH blob**: ``Galaxy.radius`` is ``sqrt(2) * sigma``, the Laplacian-of-
  Gaussian convention; for ``blob_doh`` the radius is about ``sigma``.
* **rotation about the image centre**: ``preprocess_image`` rotates the *whole* image about its
  centre (``ski.transform.rotate``) and then crops at the galaxy's *unrotated* coordinates (with
  the same x/y swap), so an off-centre galaxy is not where the crop is; the angle is also
  measured on the swapped crop.
* **black-stripe check**: the 10x10 window around a dark pixel is asymmetric
  (``range(p - 5, p + 5)``), its comment says "10 dark pixels" while the threshold is 15, the
  list of bright pixels is computed but never used, and the line fit regresses column on row
  (``np.polyfit(x=rows, y=cols)``), so a vertical line of pixels is degenerate (NaN ``R^2``,
  which then reads as "no stripe").
* ``rgb2gray`` and the first crop are computed twice (in ``filter_image`` and again in
  ``preprocess_image``), as in the notebook's loop.

Changes from the notebook, none of which changes its logic or its cost materially:

* all plotting, all ``print()`` calls and the ``verbose`` arguments are removed;
* crashes that would stop a serial loop over many images are caught and the image is reported
  as rejected with reason ``"error"`` (each guard is marked ``GUARD`` in a comment);
* ``filter_image`` returns a reason string instead of ``True`` for a rejection (the same
  branches, only split by which check fired), and ``find_galaxy`` also hands back the candidate
  blob it picked, so that the result can report where the galaxy was;
* :func:`notebook_process` runs ``filter_image`` then ``preprocess_image`` on one RGB image, as
  the notebook's primary loop does with ``FILTER_IMAGES = PREPROCESS_IMAGES = True`` (minus the
  ``img_as_ubyte`` / ``imsave``).

Run it directly to time it on a few 424x424 images::

    .venv/bin/python benchmarks/notebook000.py [--count 10]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from skimage import color, exposure, feature, transform, util

__all__ = ["Galaxy", "notebook_process"]

FloatImage = npt.NDArray[np.floating[Any]]


class Galaxy:
    def __init__(self, x: float, y: float, sigma: float) -> None:
        self._x = x
        self._y = y
        self._sigma = sigma

    @property
    def center(self) -> list[float]:
        return [self._x, self._y]

    @property
    def radius(self) -> float:
        factor = np.sqrt(2)
        return float(factor * self._sigma)


def cropp_image(image: FloatImage, center_x: float, center_y: float, radius: float) -> FloatImage:
    return image[
        int(center_x - radius) : int(center_x + radius),
        int(center_y - radius) : int(center_y + radius),
    ]


def overlap(image: FloatImage, galaxy1: Galaxy, galaxy2: Galaxy) -> bool:
    top_galaxy, bottom_galaxy = (
        (galaxy1, galaxy2) if galaxy1.center[1] > galaxy2.center[1] else (galaxy2, galaxy1)
    )
    # top_galaxy will be the one most to the bottom of the pictures
    # This is because of the pixel coordinates, where the y-axis is inverted

    D = np.sqrt(
        (top_galaxy.center[0] - bottom_galaxy.center[0]) ** 2
        + (top_galaxy.center[1] - bottom_galaxy.center[1]) ** 2
    )
    alpha = np.arcsin((top_galaxy.center[0] - bottom_galaxy.center[0]) / D)

    # (sic: both branches are the same in the notebook)
    if top_galaxy.center[0] < bottom_galaxy.center[0]:
        alpha = np.pi / 2 + alpha
    else:
        alpha = np.pi / 2 + alpha

    closest_point = [
        int(top_galaxy.center[0] + top_galaxy.radius * np.cos(alpha)),
        int(top_galaxy.center[1] - top_galaxy.radius * np.sin(alpha)),
    ]
    return bool(
        np.sqrt(
            (closest_point[0] - bottom_galaxy.center[0]) ** 2
            + (closest_point[1] - bottom_galaxy.center[1]) ** 2
        )
        < bottom_galaxy.radius
    )


def find_galaxy(
    image: FloatImage, window: int
) -> tuple[Galaxy | Literal[False] | None, Galaxy | None]:
    """The notebook's ``find_galaxy``; returns ``(its return value, the candidate blob)``.

    The first item is what the notebook returns (``None``: no blob in the window, ``False``: the
    chosen blob overlaps another one, else the ``Galaxy``); the second is the chosen blob (also
    when it was rejected for overlap), only for reporting.
    """
    blobs = feature.blob_doh(image, threshold=0.004, max_sigma=100, overlap=1)
    image_center = [image.shape[0] // 2, image.shape[1] // 2]
    found_galaxy = None
    largest_sigma = 0
    blobs_in_window = []
    for b in blobs:
        if all(abs(b[i] - image_center[i]) < window for i in range(2)) and b[2] > largest_sigma:
            blobs_in_window.append(b)
            largest_sigma = b[2]
            found_galaxy = b

    if found_galaxy is None:
        return None, None

    galaxy = Galaxy(found_galaxy[1], found_galaxy[0], found_galaxy[2])

    for b in blobs:
        blob = Galaxy(b[1], b[0], b[2])
        if blob.center != galaxy.center:  # noqa: SIM102 (as in the notebook)
            # Check if they overlap
            if overlap(image, galaxy, blob):
                return False, galaxy
    return galaxy, galaxy


def check_for_black_stripe(image: FloatImage) -> bool:
    # If there is at least 10 dark pixels in a row of any angle that are surrounded by light
    # pixels, then there is a black stripe
    # image is cropped and gray scaled

    dark_pixel_threshold = 0.1
    dark_pixel_count_threshold = 15
    bright_pixel_threshold = 0.2

    dark_pixels = []
    for i in range(image.shape[0]):
        for j in range(image.shape[1]):
            if image[i][j] < dark_pixel_threshold:
                dark_pixels.append([i, j])

    # (sic: computed but only ever used for plotting in the notebook; kept for its cost)
    bright_pixels = []
    for i in range(image.shape[0]):
        for j in range(image.shape[1]):
            if image[i][j] > bright_pixel_threshold:
                bright_pixels.append([i, j])

    suspicious_pixels = []
    # Look at a window around each dark pixel
    # If the mean of the pixels in the window is above the bright pixel threshold, add it to the
    # list of suspicious pixels
    for pixel in dark_pixels:
        window = 5
        window_pixels = []
        for i in range(pixel[0] - window, pixel[0] + window):
            for j in range(pixel[1] - window, pixel[1] + window):
                if i >= 0 and i < image.shape[0] and j >= 0 and j < image.shape[1]:
                    window_pixels.append(image[i][j])
        if np.mean(window_pixels) > bright_pixel_threshold:
            suspicious_pixels.append(pixel)

    # How many suspicious pixels are there?
    if len(suspicious_pixels) > dark_pixel_count_threshold:
        # Do linear regression on the suspicious pixels
        # If the R^2 value is high, then there is a black stripe

        # Get the x and y values of the suspicious pixels
        x = []
        y = []
        for pixel in suspicious_pixels:
            x.append(pixel[0])
            y.append(pixel[1])
        # GUARD: on degenerate input (all suspicious pixels in one row or one column) polyfit
        # warns (RankWarning) and corrcoef divides by zero (RuntimeWarning, R^2 = NaN, which the
        # notebook then reads as "no stripe"). They only warn, so the notebook's logic is kept;
        # the warnings are silenced so a long loop stays quiet, and should either raise instead
        # (e.g. under -W error) the caller reports the image as rejected with reason "error".
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", np.exceptions.RankWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            # Do linear regression with numpy
            _slope, _intercept = np.polyfit(x, y, 1)
            # Get the R^2 value
            r_squared = np.corrcoef(x, y)[0, 1] ** 2
        # If the R^2 value is high, then there is a black stripe
        return bool(r_squared > 0.3)
    else:
        return False


def get_covariance_matrix(
    image: npt.NDArray[np.bool_], x_size: int, y_size: int
) -> npt.NDArray[np.float64]:
    coord_rows = []
    coord_columns = []
    for index_row in range(0, x_size):
        for index_column in range(0, y_size):
            if image[index_row][index_column] == 1:
                coord_rows.append(index_row)
                coord_columns.append(index_column)
    # GUARD: with fewer than two bright pixels np.cov only warns and returns NaN; the NaN then
    # makes the np.where unpacking in get_rotation_on_image fail (caught there). The warning is
    # silenced so a long loop stays quiet.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        cov_matrix: npt.NDArray[np.float64] = np.cov(coord_rows, y=coord_columns)
    return cov_matrix


def get_rotation_on_image(image: FloatImage) -> float:
    binary_image = util.img_as_bool(image)

    cov_matrix = get_covariance_matrix(binary_image, len(binary_image), len(binary_image[0]))

    result = np.linalg.eigh(cov_matrix)
    eigenvalues = result[0]
    eigenvectors = result[1]

    # GUARD: this unpacking raises ValueError when the two eigenvalues are (close to) equal (two
    # matches) or NaN (no match, e.g. an all-dark crop); the caller reports "error".
    (max_eigen_index,) = np.where(np.isclose(eigenvalues, max(eigenvalues)))[0]
    rotations_in_radians = np.arccos(
        (eigenvectors[max_eigen_index][0] + eigenvectors[(max_eigen_index + 1) % 2][1]) / 2
    )
    rotation_in_degrees = np.rad2deg(rotations_in_radians)
    if rotation_in_degrees > 90:
        rotation_in_degrees = 180 - rotation_in_degrees

    if (eigenvectors[max_eigen_index][0] * eigenvectors[max_eigen_index][1]) > 0:
        rotation_in_degrees = -rotation_in_degrees

    return float(rotation_in_degrees + 90)


def filter_image(img: npt.NDArray[np.uint8]) -> tuple[Galaxy | str, Galaxy | None]:
    """The notebook's ``filter_image``; returns ``(galaxy or rejection reason, candidate)``.

    The notebook returns ``True`` for every rejection; here the same branches return the reason
    (``"no_galaxy"``, ``"overlap"`` or ``"stripe"``) instead. The second item is the candidate
    blob ``find_galaxy`` chose, for reporting only.
    """
    gray_img = color.rgb2gray(img)
    galaxy, candidate = find_galaxy(gray_img, window=50)
    if galaxy is None:
        return "no_galaxy", candidate
    if galaxy is False:
        return "overlap", candidate

    cropped_img = cropp_image(gray_img, galaxy.center[0], galaxy.center[1], galaxy.radius)
    # GUARD: the crop can be empty (negative bounds wrap, x/y swap near an edge) and then
    # rescale_intensity raises ValueError (min of an empty array); the caller reports "error".
    cropped_exposed_img = exposure.rescale_intensity(cropped_img)
    return_value = check_for_black_stripe(cropped_exposed_img)  ## Not implemented
    if return_value is True:
        return "stripe", candidate

    return galaxy, candidate


def preprocess_image(img: npt.NDArray[np.uint8], galaxy: Galaxy) -> tuple[FloatImage, float]:
    """The notebook's ``preprocess_image``; also returns the rotation angle it applied."""
    gray_img = color.rgb2gray(img)
    cropped_img = cropp_image(gray_img, galaxy.center[0], galaxy.center[1], galaxy.radius)
    # GUARD: same empty-crop ValueError as in filter_image (cannot happen after it passed, since
    # the crop is the same); the caller reports "error".
    cropped_exposed_img = exposure.rescale_intensity(cropped_img)
    angle = get_rotation_on_image(cropped_exposed_img)
    rotated_image = transform.rotate(gray_img, angle)
    cropped_rotated_img = cropp_image(
        rotated_image, galaxy.center[0], galaxy.center[1], galaxy.radius
    )
    resized_cropped_rotated_image = transform.resize(cropped_rotated_img, (128, 128))
    resized_cropped_rotated_image = exposure.rescale_intensity(resized_cropped_rotated_image)
    return resized_cropped_rotated_image, angle


def notebook_process(rgb: np.ndarray) -> dict[str, Any]:
    """Run the notebook's filter + preprocess on one RGB uint8 image of shape (H, W, 3).

    Returns a dict with ``status`` (``"kept"`` or ``"rejected"``), ``reason`` (``""``,
    ``"no_galaxy"``, ``"overlap"``, ``"stripe"`` or ``"error"``), ``x``, ``y``, ``sigma`` (the
    galaxy blob as the notebook's ``Galaxy`` holds it: ``x = column``, ``y = row``; NaN when no
    blob was chosen), ``angle_deg`` (the angle ``get_rotation_on_image`` returned, NaN when
    rejected) and ``cutout`` (the 128x128 float image ``preprocess_image`` returned, None when
    rejected).
    """
    out: dict[str, Any] = {
        "status": "rejected",
        "reason": "error",
        "x": float("nan"),
        "y": float("nan"),
        "sigma": float("nan"),
        "angle_deg": float("nan"),
        "cutout": None,
    }
    candidate: Galaxy | None = None
    try:
        galaxy, candidate = filter_image(rgb)
        if isinstance(galaxy, str):
            out["reason"] = galaxy
        else:
            cutout, angle = preprocess_image(rgb, galaxy)
            out.update(status="kept", reason="", angle_deg=angle, cutout=cutout)
    # GUARD: the crashes listed at the GUARD comments above (empty crop in rescale_intensity,
    # np.where unpacking, polyfit/corrcoef/eigh on degenerate input) end only this image.
    except (ValueError, np.linalg.LinAlgError):
        out["reason"] = "error"
    if candidate is not None:
        out.update(x=float(candidate._x), y=float(candidate._y), sigma=float(candidate._sigma))
    return out


def _hubble_424() -> npt.NDArray[np.uint8]:
    from skimage import data

    img: npt.NDArray[np.uint8] = data.hubble_deep_field()
    r0 = (img.shape[0] - 424) // 2
    c0 = (img.shape[1] - 424) // 2
    return img[r0 : r0 + 424, c0 : c0 + 424, :3]


def _describe(res: dict[str, Any]) -> str:
    cut = res["cutout"]
    shape = "-" if cut is None else f"{cut.shape}"
    return (
        f"{res['status']:8s} {res['reason'] or '-':9s} x={res['x']:7.1f} y={res['y']:7.1f} "
        f"sigma={res['sigma']:6.1f} angle={res['angle_deg']:7.2f} cutout={shape}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--count", type=int, default=10, help="synthetic images (default 10)")
    args = parser.parse_args()

    from pipeline.synth.galaxies import render_galaxy_image

    images: list[tuple[str, npt.NDArray[np.uint8]]] = [("hubble_deep_field[424]", _hubble_424())]
    for i in range(args.count):
        img, _truth = render_galaxy_image(
            np.random.default_rng(i), size=424, galaxy_class="round", kind="normal"
        )
        images.append((f"synth round/normal seed={i}", img))

    times: list[float] = []
    for name, img in images:
        t0 = time.perf_counter()
        res = notebook_process(img)
        dt = time.perf_counter() - t0
        if name.startswith("synth"):
            times.append(dt)
        print(f"{name:26s} {dt * 1e3:8.1f} ms  {_describe(res)}")
    if times:
        print(
            f"synthetic 424x424: median {statistics.median(times) * 1e3:.1f} ms/image "
            f"(min {min(times) * 1e3:.1f}, max {max(times) * 1e3:.1f}, n={len(times)})"
        )


if __name__ == "__main__":
    main()
