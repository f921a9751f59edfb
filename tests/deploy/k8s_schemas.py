"""Offline JSON-schema validation of Kubernetes objects, for tests/deploy/test_manifests.py.

Built-in kinds (ConfigMap, CronJob, Role...) are checked against the Kubernetes JSON schemas
bundled in the ``kubernetes_validate`` package, in their ``-strict`` form (an unknown field is
an error, as with ``kubectl apply --validate=strict``). The Dask operator's kinds (DaskJob,
DaskCluster, DaskWorkerGroup, DaskAutoscaler) are checked against the CRDs shipped in the
``dask_kubernetes`` wheel (the Helm chart's ``crds/``): each version's
``schema.openAPIV3Schema`` is what the API server enforces. A CRD schema leaves unknown fields
to the API server, which drops them (with a warning at most): a misspelt field would be lost
without an error, so they are made strict here too, and the objects' ``metadata`` is checked
against the built-in ``ObjectMeta``.

Everything is read from the installed packages' folders (found with ``importlib.util``, without
importing them); no reference is fetched from the network (a ``referencing`` registry holds the
definitions, and an unknown reference is an error).
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource

__all__ = [
    "CRD_GROUP",
    "KUBERNETES_VERSION",
    "SchemaNotFound",
    "crd_schema",
    "crd_validator",
    "errors",
    "raw_crd_schemas",
    "validator",
]

#: The Kubernetes version whose schemas built-in kinds are checked against: the newest that
#: kubernetes_validate 1.37 bundles. (The manifests use nothing newer than batch/v1 CronJob.)
KUBERNETES_VERSION = "1.37.0"

#: The Dask operator's API group.
CRD_GROUP = "kubernetes.dask.org"

_DEFINITIONS_ID = "https://kubernetes.io/api/_definitions.json"
_OBJECT_META = f"{_DEFINITIONS_ID}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"


class SchemaNotFound(LookupError):
    """No bundled schema for an object's apiVersion and kind."""


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SchemaNotFound(f"the package {name!r} is not installed (pip install -e '.[dev]')")
    return Path(next(iter(spec.submodule_search_locations)))


def schema_dir() -> Path:
    """kubernetes_validate's strict schemas for :data:`KUBERNETES_VERSION`."""
    path = (
        _package_dir("kubernetes_validate")
        / "kubernetes-json-schema"
        / f"v{KUBERNETES_VERSION}-local-strict"
    )
    if not path.is_dir():
        raise SchemaNotFound(f"kubernetes_validate bundles no schemas for {KUBERNETES_VERSION}")
    return path


def crd_dir() -> Path:
    """The Dask operator's CRDs in the dask_kubernetes wheel."""
    return (
        _package_dir("dask_kubernetes")
        / "operator"
        / "deployment"
        / "helm"
        / "dask-kubernetes-operator"
        / "crds"
    )


@functools.cache
def _registry() -> Registry:
    defs = json.loads((schema_dir() / "_definitions.json").read_text())
    return Registry().with_resource(_DEFINITIONS_ID, Resource.from_contents(defs))


def _schema_file(api_version: str, kind: str) -> Path:
    # kubernetes_validate's naming: cronjob-batch-v1.json, role-rbac-v1.json, configmap-v1.json
    # (the group's first label, then the version).
    short = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)
    return schema_dir() / f"{kind.lower()}-{short}.json"


@functools.cache
def raw_crd_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """Each served version's ``openAPIV3Schema`` of the operator's CRDs, as shipped, by
    (apiVersion, kind)."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(crd_dir().glob("*.yaml")):
        # The C loader where PyYAML has it: the CRDs are about 900 kB of YAML.
        crd = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
        for version in crd["spec"]["versions"]:
            if version.get("served", True):
                out[(f"{group}/{version['name']}", kind)] = version["schema"]["openAPIV3Schema"]
    if not out:
        raise SchemaNotFound(f"no CRDs in {crd_dir()}")
    return out


def _ref_target(ref: str) -> str:
    # Unresolved CRDs point at the Kubernetes definitions, e.g.
    # python://k8s_crd_resolver/schemas/k8s.json#/definitions/io.k8s.api.core.v1.PodSpec:
    # the same definitions as kubernetes_validate's, under $defs.
    match = re.search(r"#/definitions/(.+)$", ref)
    if match is None:
        raise SchemaNotFound(f"cannot resolve the CRD reference {ref!r} offline")
    return f"{_DEFINITIONS_ID}#/$defs/{match.group(1)}"


def _openapi_to_strict(node: Any) -> Any:
    """An OpenAPI v3 CRD schema as a JSON schema that refuses unknown fields.

    ``additionalProperties: false`` goes on every object that lists its ``properties`` and
    neither allows other keys nor preserves unknown fields; ``nullable: true`` allows null;
    ``$ref`` (none in the shipped CRDs, which are resolved) points into the definitions.
    """
    if isinstance(node, list):
        return [_openapi_to_strict(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: _openapi_to_strict(v) for k, v in node.items()}
    if "$ref" in out:
        out["$ref"] = _ref_target(out["$ref"])
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    if node.get("nullable") and isinstance(node.get("type"), str):
        out["type"] = [node["type"], "null"]
    return out


@functools.cache
def crd_schema(api_version: str, kind: str) -> dict[str, Any]:
    """The strict JSON schema of a whole object of a Dask operator kind (its CRD's schema,
    with apiVersion, kind and metadata required and checked)."""
    raw = raw_crd_schemas().get((api_version, kind))
    if raw is None:
        raise SchemaNotFound(f"no CRD for {kind} {api_version}")
    schema = _openapi_to_strict(copy.deepcopy(raw))
    schema["properties"] = {
        "apiVersion": {"const": api_version},
        "kind": {"const": kind},
        "metadata": {"$ref": _OBJECT_META},
        **schema.get("properties", {}),
    }
    schema["required"] = ["apiVersion", "kind", "metadata", *schema.get("required", [])]
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


@functools.cache
def crd_validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    """A validator of a Dask operator kind (see :func:`crd_schema`)."""
    return jsonschema.Draft202012Validator(crd_schema(api_version, kind), registry=_registry())


@functools.cache
def validator(api_version: str, kind: str) -> jsonschema.protocols.Validator:
    """A validator of any kind with a bundled schema: a built-in kind's strict schema, or a
    Dask operator kind's CRD (made strict).

    Raises
    ------
    SchemaNotFound
        For other kinds (other operators' custom resources, such as the Prometheus
        Operator's PodMonitor).
    """
    if api_version.split("/")[0] == CRD_GROUP:
        return crd_validator(api_version, kind)
    path = _schema_file(api_version, kind)
    if not path.is_file():
        raise SchemaNotFound(f"no bundled schema for {kind} {api_version} ({path.name})")
    schema = json.loads(path.read_text())
    return jsonschema.Draft202012Validator(schema, registry=_registry())


def errors(obj: dict[str, Any]) -> list[str]:
    """Every schema violation of ``obj``, as ``path: message`` lines (empty: valid)."""
    check = validator(obj["apiVersion"], obj["kind"])
    found = sorted(check.iter_errors(obj), key=lambda e: list(map(str, e.absolute_path)))
    return [f"{e.json_path}: {e.message[:300]}" for e in found]
