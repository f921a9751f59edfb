"""The core layer: run store, manifest, table registry, runtime, job specs, runner, stage registry.

It imports nothing else of the project; every other layer builds on it.
"""
