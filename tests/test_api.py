"""The curated public API: every name resolves to the object its module defines, lazily, and
no name hides a subpackage."""

from __future__ import annotations

import importlib
import types

import pytest

import pipeline
import pipeline.workflows.embed as embed
import pipeline.workflows.survival as survival

LAZY_PACKAGES = [pipeline, embed, survival]


@pytest.mark.parametrize("package", LAZY_PACKAGES, ids=lambda p: p.__name__)
def test_every_public_name_is_the_object_its_module_defines(package: types.ModuleType) -> None:
    api: dict[str, str] = package._API
    assert sorted(api) == sorted(n for n in package.__all__ if n != "__version__")
    for name, module in api.items():
        assert getattr(package, name) is getattr(importlib.import_module(module), name), name
    assert sorted(api) == [n for n in dir(package) if n in api]


@pytest.mark.parametrize("package", LAZY_PACKAGES, ids=lambda p: p.__name__)
def test_an_unknown_name_is_an_attribute_error_naming_it(package: types.ModuleType) -> None:
    with pytest.raises(
        AttributeError, match=f"module '{package.__name__}' has no attribute 'nope'"
    ):
        package.nope  # noqa: B018


def test_no_public_name_hides_a_subpackage() -> None:
    subpackages = {"core", "io", "imaging", "compute", "features", "workflows", "report", "synth"}
    assert not subpackages & set(pipeline.__all__)
    for name in pipeline.__all__:
        getattr(pipeline, name)
    for name in subpackages:
        assert isinstance(importlib.import_module(f"pipeline.{name}"), types.ModuleType)
        assert getattr(pipeline, name).__name__ == f"pipeline.{name}"
