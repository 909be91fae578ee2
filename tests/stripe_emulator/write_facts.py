"""Write the Stripe facts the emulator's tests check against into `facts/`, trimmed to what they
use, from Stripe's published material (see `facts/README.md` for the sources):

    .venv/bin/python -m tests.stripe_emulator.write_facts SOURCE_DIR

SOURCE_DIR holds `openapi-subset-2023-08-16.json` (a subset of Stripe's OpenAPI spec with the
full `$ref` closure of the objects the emulator serves), `sdk16-vs-spec2023-field-diff.json` and
`webhook-signature-vectors.json`. The schemas are written as JSON Schema (Draft 2020-12), so the
tests validate with `jsonschema` directly.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

FACTS_DIR = Path(__file__).resolve().parent / "facts"
SCHEMAS_FILE = FACTS_DIR / "openapi-2023-08-16-schemas.json"
SPEC_ONLY_FIELDS_FILE = FACTS_DIR / "spec-2023-fields-not-in-sdk16.json"
VECTORS_FILE = FACTS_DIR / "webhook-signature-vectors.json"

# The responses the tests validate whole (`assert_valid_response`), by path and method.
VALIDATED_RESPONSES = {
    "/v1/checkout/sessions": ("get", "post"),
    "/v1/checkout/sessions/{session}/expire": ("post",),
    "/v1/checkout/sessions/{session}/line_items": ("get",),
    "/v1/events": ("get",),
    "/v1/events/{id}": ("get",),
    "/v1/refunds": ("post",),
}
# Text for people, not constraints: left out.
ANNOTATIONS = frozenset({"description", "title"})
VECTOR_FIELDS = ("name", "secret", "payload", "header", "tolerance", "expect")

JSON = dict[str, Any]


def to_json_schema(node: Any) -> Any:
    """OpenAPI 3.0 → JSON Schema: `nullable` becomes `anyOf [.., null]`; `x-` extensions and
    annotations go. Property names are kept whatever they are called."""
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted: JSON = {}
    for key, value in node.items():
        if key.startswith("x-") or key in ANNOTATIONS or key == "nullable":
            continue
        if key == "properties":
            converted[key] = {name: to_json_schema(schema) for name, schema in value.items()}
        else:
            converted[key] = to_json_schema(value)
    if node.get("nullable"):
        return {"anyOf": [converted, {"type": "null"}]}
    return converted


def _response_schema(spec: JSON, path: str, method: str) -> Any:
    operation = spec["paths"][path][method]
    return to_json_schema(operation["responses"]["200"]["content"]["application/json"]["schema"])


def schemas(spec: JSON) -> JSON:
    return {
        "components": {
            "schemas": {
                name: to_json_schema(schema)
                for name, schema in spec["components"]["schemas"].items()
            }
        },
        "responses": {
            path: {method: _response_schema(spec, path, method) for method in methods}
            for path, methods in VALIDATED_RESPONSES.items()
        },
    }


def spec_only_fields(diff: JSON) -> JSON:
    """Per object, the fields the 2023 spec requires that SDK 16 no longer has."""
    return {
        name: entry["only_in_2023_spec"]
        for name, entry in diff.items()
        if isinstance(entry, dict) and entry.get("only_in_2023_spec")
    }


def vectors(source: JSON) -> list[JSON]:
    return [{field: vector[field] for field in VECTOR_FIELDS} for vector in source["vectors"]]


def _write(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, indent=1, sort_keys=True, ensure_ascii=False) + "\n")


def main(source_dir: Path) -> None:
    def read(name: str) -> JSON:
        data: JSON = json.loads((source_dir / name).read_text())
        return data

    FACTS_DIR.mkdir(exist_ok=True)
    _write(SCHEMAS_FILE, schemas(read("openapi-subset-2023-08-16.json")))
    _write(SPEC_ONLY_FIELDS_FILE, spec_only_fields(read("sdk16-vs-spec2023-field-diff.json")))
    _write(VECTORS_FILE, vectors(read("webhook-signature-vectors.json")))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
