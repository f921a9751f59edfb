"""Plate screening: 96/384-well spheroid plates in, segmented, measured, profiled (seed 001)."""
