"""An answer checked against what the API documents: the schema of the app's own OpenAPI
document (what a client reads), and the bytes the documented response model itself would
serialize (what FastAPI sent while it validated and serialized every answer)."""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import FastAPI
from jsonschema import Draft202012Validator  # type: ignore[import-untyped]
from pydantic import BaseModel


def assert_documented(app: FastAPI, answer: httpx.Response, model: type[BaseModel]) -> None:
    """`answer` is valid against its model's schema in `app.openapi()`, and its body is exactly
    what the model serializes from it: the same keys in the same order, nothing more, and every
    time, id and number written as the model writes them."""
    assert answer.status_code in {200, 201}, answer.text
    assert answer.headers["content-type"] == "application/json"
    document: dict[str, Any] = app.openapi()
    schema = {
        "$ref": f"#/components/schemas/{model.__name__}",
        "components": document["components"],
    }
    errors = sorted(Draft202012Validator(schema).iter_errors(answer.json()), key=str)
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:5])
    assert answer.content == model.model_validate_json(answer.content).model_dump_json().encode()
