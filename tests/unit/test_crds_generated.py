"""The committed CRDs are exactly what the models generate."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from webhook_operator import crdgen

CRD_DIR = Path(__file__).resolve().parents[2] / "crds"


@pytest.mark.parametrize("name", sorted(crdgen.rendered_files()))
def test_committed_crd_is_current(name: str) -> None:
    expected = crdgen.rendered_files()[name]
    path = CRD_DIR / name
    assert path.exists(), f"{path} is missing: run `make crds`"
    assert path.read_text() == expected, f"{path} is stale: run `make crds` and commit it"


def test_no_other_files_in_crds_dir() -> None:
    assert sorted(p.name for p in CRD_DIR.glob("*.yaml")) == sorted(crdgen.rendered_files())


def _walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, schema)]
    for name, prop in schema.get("properties", {}).items():
        found += _walk(prop, f"{path}.{name}")
    if "items" in schema:
        found += _walk(schema["items"], f"{path}[]")
    return found


@pytest.mark.parametrize("info", crdgen.KINDS, ids=lambda i: i.kind)
def test_every_field_is_described(info: crdgen.KindInfo) -> None:
    root = crdgen.crd(info)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    undescribed = [
        path
        for path, node in _walk(root)
        if path and path != ".metadata" and not path.endswith("[]") and not node.get("description")
    ]
    assert undescribed == [], "kubectl explain would print nothing for these"


@pytest.mark.parametrize("info", crdgen.KINDS, ids=lambda i: i.kind)
def test_schema_is_structural(info: crdgen.KindInfo) -> None:
    text = yaml.safe_dump(crdgen.crd(info))
    for forbidden in ("$ref", "anyOf", "$defs", "title:", "additionalProperties: true"):
        assert forbidden not in text


def test_crd_reference_is_current() -> None:
    from webhook_operator import crdreference

    path = CRD_DIR.parent / "docs" / "crd-reference.md"
    assert path.read_text() == crdreference.render(), f"{path} is stale: run `make crds`"
