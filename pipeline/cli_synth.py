"""``pipeline synth``: the generators of synthetic collections with known truth."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from pipeline.cli_args import parse_combinations, parse_concentration, parse_fraction
from pipeline.cli_common import EXIT_OK, EXIT_USAGE, Bars

__all__ = ["add_synth_parser", "run_synth"]


def add_synth_parser(sub: Any) -> None:
    """Add ``synth`` and its generators to the command line's subparsers ``sub``."""
    p = sub.add_parser("synth", help="generate synthetic data with known truth")
    synth = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    g = synth.add_parser("galaxies", help="Galaxy-Zoo-like RGB JPEG cutouts and truth.csv")
    g.add_argument("out", help="output folder")
    g.add_argument("--count", type=int, default=200, help="number of images (default 200)")
    g.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    g.add_argument("--size", type=int, default=424, help="image side in pixels (default 424)")
    m = synth.add_parser(
        "mosaic", help="a survey mosaic (FITS float32 or tiled TIFF uint16) and its truth CSV"
    )
    m.add_argument("out", help="output file: .fits, .tif or .tiff")
    m.add_argument("--height", type=int, default=4096, help="pixels (default 4096)")
    m.add_argument("--width", type=int, default=4096, help="pixels (default 4096)")
    m.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    m.add_argument(
        "--density", type=float, default=60.0, help="sources per 1000 x 1000 px (default 60)"
    )
    m.add_argument(
        "--star-fraction", type=float, default=0.3, help="fraction of stars (default 0.3)"
    )
    pl = synth.add_parser(
        "plate",
        help="bright-field spheroid plates (TIFF), image index, plate map and truth",
        description="Synthetic 96/384-well plates of tumour spheroids imaged on days 7-10: "
        "images/, image_index.csv, plate_map.csv, truth.csv (per well: treatment, efficacy, "
        "viability, exploded), image_truth.csv (per image: faults, areas) and viability.csv "
        "(the end-point viability read-out of a seeded share of the inner wells).",
    )
    pl.add_argument("out", help="output folder")
    pl.add_argument("--plates", type=int, default=1, help="number of plates (default 1)")
    pl.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    pl.add_argument("--size", type=int, default=1024, help="image side in pixels (default 1024)")
    pl.add_argument("--wells", type=int, choices=[96, 384], default=96, help="plate format")
    pl.add_argument(
        "--fields",
        type=int,
        nargs=2,
        default=(1, 4),
        metavar=("MIN", "MAX"),
        help="fields per well, drawn per well in [MIN, MAX] (default 1 4)",
    )
    pl.add_argument(
        "--days", type=int, nargs="+", default=[7, 8, 9, 10], help="days imaged (default 7-10)"
    )
    pl.add_argument("--bit-depth", type=int, choices=[8, 16], default=16, help="default 16")
    pl.add_argument(
        "--fault-rate", type=float, default=0.03, help="share of images with a fault (0.03)"
    )
    pl.add_argument("--masks", action="store_true", help="also write the true label masks")
    pl.add_argument(
        "--combinations",
        type=parse_combinations,
        metavar="N",
        help="screen only the first N drug combinations (default all)",
    )
    pl.add_argument(
        "--concentrations",
        type=parse_concentration,
        nargs="+",
        metavar="C",
        help="screening concentrations in uM, positive (default 0.1 1)",
    )
    pl.add_argument(
        "--readout-fraction",
        type=parse_fraction,
        default=0.5,
        metavar="F",
        help="share in [0, 1] of inner untreated and of inner treated wells in "
        "viability.csv (default 0.5)",
    )
    nu = synth.add_parser(
        "nuclei",
        help="fluorescence nuclei images, masks (PNG, Data Science Bowl layout) and truth",
        description="Synthetic fluorescence nuclei with known instances: images/<id>.png and "
        "masks/<id>.png matched by name (16-bit labels or 8-bit 0/255) and truth.csv (per "
        "nucleus: centroid, area, axes, intensity, cluster, touching); some nuclei touch in "
        "clusters. --large adds large/field.tif (tiled uint16), its uint32 labels and truth.",
    )
    nu.add_argument("out", help="output folder")
    nu.add_argument("--count", type=int, default=100, help="number of images (default 100)")
    nu.add_argument("--size", type=int, default=256, help="image side in pixels (default 256)")
    nu.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    nu.add_argument("--channels", type=int, choices=[1, 3], default=1, help="1 grey, 3 RGB")
    nu.add_argument("--mask-format", choices=["label", "binary"], default="label")
    nu.add_argument("--large", type=int, metavar="PX", help="also a PX x PX field (>= 256)")
    nu.add_argument("--tile", type=int, default=1024, help="large field TIFF tile (1024)")


def run_synth(args: argparse.Namespace) -> int:
    """``pipeline synth WHAT``: write the generated collection and say what was written."""
    from pipeline.synth import generate_galaxies, generate_mosaic

    if args.what == "mosaic":
        try:
            sources = generate_mosaic(
                args.out,
                height=args.height,
                width=args.width,
                seed=args.seed,
                density=args.density,
                star_fraction=args.star_fraction,
            )
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        print(
            f"Wrote a {args.height} x {args.width} mosaic with {len(sources)} sources to {args.out}"
        )
        return EXIT_OK
    if args.what == "plate":
        from pipeline.synth import PlateSynthParams, generate_plates

        params = PlateSynthParams()
        if args.combinations is not None:
            params = dataclasses.replace(
                params, screening_drugs=params.screening_drugs[: args.combinations]
            )
        if args.concentrations is not None:
            params = dataclasses.replace(
                params, screening_concentrations=tuple(args.concentrations)
            )
        bars = Bars(quiet=False)
        try:
            truth = generate_plates(
                args.out,
                plates=args.plates,
                seed=args.seed,
                size=args.size,
                fields=tuple(args.fields),
                days=tuple(args.days),
                wells=args.wells,
                bit_depth=args.bit_depth,
                fault_rate=args.fault_rate,
                write_masks=args.masks,
                readout_fraction=args.readout_fraction,
                params=params,
                progress=lambda done, total: bars("images", done, total),
            )
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        finally:
            bars.close()
        print(
            f"Wrote {args.plates} plate(s) of {args.wells} wells ({len(truth)} wells) to "
            f"{args.out}: images/, image_index.csv, plate_map.csv, truth.csv, image_truth.csv, "
            "viability.csv"
        )
        return EXIT_OK
    if args.what == "nuclei":
        from pipeline.synth import generate_nuclei

        bars = Bars(quiet=False)
        try:
            nuclei = generate_nuclei(
                args.out,
                count=args.count,
                size=args.size,
                seed=args.seed,
                channels=args.channels,
                mask_format=args.mask_format,
                large=args.large,
                tile=args.tile,
                progress=lambda done, total: bars("images and tiles", done, total),
            )
        except ValueError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        finally:
            bars.close()
        field = f", large/ ({args.large} x {args.large} field)" if args.large else ""
        print(
            f"Wrote {args.count} images with {len(nuclei)} nuclei to {args.out}: images/, masks/, "
            f"truth.csv{field}"
        )
        return EXIT_OK
    truth = generate_galaxies(args.out, count=args.count, seed=args.seed, size=args.size)
    print(f"Wrote {len(truth)} images and truth.csv to {args.out}")
    return EXIT_OK
