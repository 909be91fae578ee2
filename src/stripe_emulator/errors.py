"""Stripe's error object: the exception the handlers raise and the JSON body the API answers."""

from __future__ import annotations

from typing import Any

DOCS = "https://stripe.com/docs/error-codes/"


class StripeError(Exception):
    """An error answered as `{"error": {...}}` with Stripe's status code, type and code."""

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        error_type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        decline_code: str | None = None,
        details: dict[str, Any] | None = None,
        keep_writes: bool = False,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_type = error_type
        self.code = code
        self.param = param
        self.decline_code = decline_code
        # Objects the error is about (`payment_intent`, `charge`, ...), as Stripe includes them.
        self.details = details or {}
        # A card error still records what happened (the failed charge, the intent's new state).
        self.keep_writes = keep_writes

    def body(self) -> dict[str, Any]:
        """The response body; absent fields are left out because the schema does not allow null."""
        error: dict[str, Any] = {"message": self.message, "type": self.error_type}
        if self.code is not None:
            error["code"] = self.code
            error["doc_url"] = DOCS + self.code.replace("_", "-")
        if self.param is not None:
            error["param"] = self.param
        if self.decline_code is not None:
            error["decline_code"] = self.decline_code
        return {"error": {**error, **self.details}}


def missing_param(param: str) -> StripeError:
    return StripeError(f"Missing required param: {param}.", code="parameter_missing", param=param)


def invalid_param(param: str, message: str, *, code: str | None = None) -> StripeError:
    return StripeError(message, code=code, param=param)


def no_such(object_name: str, object_id: str, param: str) -> StripeError:
    return StripeError(
        f"No such {object_name}: '{object_id}'", status=404, code="resource_missing", param=param
    )
