"""Stripe's form encoding: `a[b][0][c]=v` pairs into nested values, and a typed reader over them.

The SDK sends POST bodies with literal brackets and GET query strings with percent-encoded ones;
both arrive here already percent-decoded as (key, value) pairs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from stripe_emulator.errors import StripeError, invalid_param, missing_param

_KEY = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_SUBSCRIPT = re.compile(r"\[([^\[\]]*)\]")

FormValue = str | dict[str, Any] | list[Any]


def decode_pairs(pairs: Iterable[tuple[str, str]]) -> dict[str, Any]:
    """Nest bracketed keys; objects whose keys are all indices become lists in index order."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        match = _KEY.match(key)
        if match is None:
            raise StripeError(f"Invalid parameter name: {key}", param=key)
        path = [match.group(1), *_SUBSCRIPT.findall(match.group(2))]
        node = root
        for depth, part in enumerate(path):
            name = part if part else str(len(node))  # `expand[]=a&expand[]=b` appends
            if depth == len(path) - 1:
                if isinstance(node.get(name), dict):
                    raise StripeError(f"Invalid value for {key}: expected an object", param=key)
                node[name] = value
            else:
                child = node.setdefault(name, {})
                if not isinstance(child, dict):
                    raise StripeError(f"Invalid value for {key}: expected a string", param=key)
                node = child
    return {key: _listify(value) for key, value in root.items()}


def _listify(value: Any) -> Any:
    if not isinstance(value, dict):
        return value
    nested = {key: _listify(item) for key, item in value.items()}
    if nested and all(key.isdigit() for key in nested):
        return [nested[key] for key in sorted(nested, key=int)]
    return nested


class Params:
    """Read typed values from decoded parameters; errors name the parameter like Stripe does."""

    def __init__(self, values: dict[str, Any], prefix: str = "") -> None:
        self.values = values
        self.prefix = prefix

    def name(self, key: str | int) -> str:
        return f"{self.prefix}[{key}]" if self.prefix else str(key)

    def reject_unknown(self, allowed: Iterable[str]) -> None:
        unknown = sorted(set(self.values) - set(allowed))
        if unknown:
            param = self.name(unknown[0])
            raise StripeError(
                f"Received unknown parameter: {param}", code="parameter_unknown", param=param
            )

    def string(self, key: str) -> str | None:
        """A string value; Stripe treats an empty string as unset."""
        value = self.values.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise invalid_param(self.name(key), f"Invalid string: {self.name(key)}")
        return value

    def required_string(self, key: str) -> str:
        value = self.string(key)
        if value is None:
            raise missing_param(self.name(key))
        return value

    def integer(self, key: str, *, minimum: int | None = None) -> int | None:
        text = self.string(key)
        if text is None:
            return None
        try:
            number = int(text)
        except ValueError:
            raise invalid_param(
                self.name(key), f"Invalid integer: {text}", code="parameter_invalid_integer"
            ) from None
        if minimum is not None and number < minimum:
            raise invalid_param(
                self.name(key), f"This value must be greater than or equal to {minimum}."
            )
        return number

    def required_integer(self, key: str, *, minimum: int | None = None) -> int:
        number = self.integer(key, minimum=minimum)
        if number is None:
            raise missing_param(self.name(key))
        return number

    def boolean(self, key: str) -> bool:
        """`true`/`false` (absent: false), as the SDK sends booleans."""
        text = self.string(key)
        if text is None:
            return False
        if text not in ("true", "false"):
            raise invalid_param(self.name(key), f"Invalid boolean: {text}")
        return text == "true"

    def nested(self, key: str) -> Params | None:
        value = self.values.get(key)
        if value is None or value == "":
            return None
        if not isinstance(value, dict):
            raise invalid_param(self.name(key), f"Invalid object: {self.name(key)}")
        return Params(value, self.name(key))

    def items(self, key: str) -> list[Params]:
        value = self.values.get(key)
        if value is None or value == "":
            return []
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise invalid_param(self.name(key), f"Invalid array: {self.name(key)}")
        return [Params(item, f"{self.name(key)}[{index}]") for index, item in enumerate(value)]

    def strings(self, key: str) -> list[str]:
        value = self.values.get(key)
        if value is None or value == "":
            return []
        if isinstance(value, str):
            return [value]
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise invalid_param(self.name(key), f"Invalid array: {self.name(key)}")
        return list(value)

    def metadata(self, key: str) -> dict[str, str]:
        value = self.values.get(key)
        if value is None or value == "":
            return {}
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise invalid_param(self.name(key), f"Invalid hash: {self.name(key)}")
        if len(value) > 50:
            raise invalid_param(self.name(key), "Metadata may have at most 50 keys.")
        return {name: text for name, text in value.items() if text != ""}
