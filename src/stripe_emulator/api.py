"""Stripe's HTTP API subset: authentication, form parsing, idempotency keys, expansion, lists,
and Stripe-shaped errors around thin handlers that call the operations."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import APIRouter, Request, Response
from starlette.background import BackgroundTask

from stripe_emulator import (
    cards,
    checkout,
    customers,
    objects,
    payment_intents,
    refunds,
    setup_intents,
)
from stripe_emulator.config import API_VERSION, WEBHOOK_TIMINGS
from stripe_emulator.emulator import Cause, Emulator
from stripe_emulator.errors import StripeError, invalid_param, no_such
from stripe_emulator.forms import Params, decode_pairs
from stripe_emulator.store import JSON, new_id
from stripe_emulator.webhooks import WebhookDeliverer

IDEMPOTENCY_KEY_LIFETIME_SECONDS = 24 * 3600
# Per request, overrides `--webhook-timing` (see docs/stripe-emulator.md).
WEBHOOK_TIMING_HEADER = "stripe-emulator-webhook-timing"
# Which fields of which object hold an expandable id.
EXPANDABLE: dict[str, set[str]] = {
    "checkout.session": {"customer", "payment_intent", "setup_intent", "line_items"},
    "payment_intent": {"customer", "latest_charge", "payment_method"},
    "setup_intent": {"customer", "payment_method"},
    "payment_method": {"customer"},
    "charge": {"customer", "payment_intent", "payment_method"},
    "refund": {"charge", "payment_intent"},
    "price": {"product"},
}
# Expandable ids inside nested objects that have no `object` of their own.
NESTED_EXPANDABLE = {"default_payment_method"}


@dataclass(frozen=True)
class ApiCall:
    emulator: Emulator
    params: Params
    path: dict[str, str]
    cause: Cause
    base_url: str
    url_path: str


Handler = Callable[[ApiCall], JSON]
router = APIRouter()
UNEXPECTED_ERROR = StripeError(
    "An unexpected error occurred in the Stripe emulator.", status=500, error_type="api_error"
)
logger = logging.getLogger(__name__)


def _api_key(request: Request) -> str:
    """The secret key from `Bearer` (the SDK) or Basic auth (`curl -u sk_test_…:`)."""
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    key = ""
    if scheme.lower() == "bearer":
        key = credentials.strip()
    elif scheme.lower() == "basic":
        try:
            key = base64.b64decode(credentials).decode().partition(":")[0]
        except (binascii.Error, UnicodeDecodeError):
            key = credentials
    if not key:
        raise StripeError(
            "You did not provide an API key. You need to provide your API key in the "
            "Authorization header, using Bearer auth (e.g. 'Authorization: Bearer "
            "YOUR_SECRET_KEY').",
            status=401,
        )
    if not key.startswith("sk_test_") or len(key) <= len("sk_test_"):
        raise StripeError(f"Invalid API Key provided: {key[:8]}****{key[-4:]}", status=401)
    return key


def _json_response(status: int, body: JSON, headers: dict[str, str]) -> Response:
    return Response(
        json.dumps(body, indent=2),
        status_code=status,
        headers=headers,
        media_type="application/json",
    )


async def _serve(request: Request, handler: Handler) -> Response:
    emulator: Emulator = request.app.state.emulator
    request_id = new_id("req_", 14)
    headers = {"Request-Id": request_id, "Stripe-Version": API_VERSION}
    try:
        api_key = _api_key(request)
    except StripeError as error:
        return _json_response(error.status, error.body(), headers)
    if request.method == "POST":
        pairs = urllib.parse.parse_qsl((await request.body()).decode(), keep_blank_values=True)
    else:
        pairs = request.query_params.multi_items()
    idempotency_key = request.headers.get("idempotency-key") if request.method == "POST" else None
    timing = request.headers.get(WEBHOOK_TIMING_HEADER, emulator.webhook_timing)
    if timing not in WEBHOOK_TIMINGS:
        refused = invalid_param(
            WEBHOOK_TIMING_HEADER, f"Use one of: {', '.join(sorted(WEBHOOK_TIMINGS))}."
        )
        return _json_response(refused.status, refused.body(), headers)
    fingerprint = hashlib.sha256(
        json.dumps([request.method, request.url.path, sorted(pairs)]).encode()
    ).hexdigest()
    cause = Cause(request_id=request_id, idempotency_key=idempotency_key, hold=timing != "queued")
    with emulator.store.transaction():
        if idempotency_key is not None:
            emulator.store.forget_idempotency_keys_before(
                time.time() - IDEMPOTENCY_KEY_LIFETIME_SECONDS
            )
            saved = emulator.store.idempotent_response(api_key, idempotency_key)
            if saved is not None:
                return _replay(idempotency_key, fingerprint, saved, headers)
        call = ApiCall(
            emulator=emulator,
            params=Params(decode_pairs(pairs)),
            path=dict(request.path_params),
            cause=cause,
            base_url=emulator.public_base_url(str(request.base_url)),
            url_path=request.url.path,
        )
        status, body = _handle(call, handler, request_id)
        if idempotency_key is not None:
            headers["Idempotency-Key"] = idempotency_key
            emulator.store.save_idempotent_response(
                api_key, idempotency_key, fingerprint, status, json.dumps(body), time.time()
            )
    deliverer: WebhookDeliverer = request.app.state.deliverer
    if timing == "before_response":
        await deliverer.deliver_held(cause.emitted)
        return _json_response(status, body, headers)
    response = _json_response(status, body, headers)
    if timing == "after_response":
        # Starlette runs it once the response is sent.
        response.background = BackgroundTask(deliverer.deliver_held, cause.emitted)
    return response


def _handle(call: ApiCall, handler: Handler, request_id: str) -> tuple[int, JSON]:
    """Run the handler in a savepoint: a failing request leaves no partial writes, only its
    stored answer, unless the error is a card error that records what happened."""
    try:
        with call.emulator.store.transaction():
            try:
                body = handler(call)
            except StripeError as error:
                if not error.keep_writes:
                    raise
                return error.status, error.body()
            _expand(call.emulator, body, call.params.strings("expand"))
            return 200, body
    except StripeError as error:
        return error.status, error.body()
    except Exception:
        logger.exception("request %s failed", request_id)
        return 500, UNEXPECTED_ERROR.body()


def _replay(
    key: str, fingerprint: str, saved: tuple[str, int, str], headers: dict[str, str]
) -> Response:
    saved_fingerprint, status, body = saved
    if saved_fingerprint != fingerprint:
        error = StripeError(
            "Keys for idempotent requests can only be used with the same parameters they were "
            f"first used with. Try using a key other than '{key}' if you meant to execute a "
            "different request.",
            error_type="idempotency_error",
        )
        return _json_response(error.status, error.body(), headers)
    return _json_response(
        status, json.loads(body), {**headers, "Idempotency-Key": key, "Idempotent-Replayed": "true"}
    )


def _expand(emulator: Emulator, body: JSON, paths: list[str]) -> None:
    for path in paths:
        _expand_path(emulator, body, path.split("."), path)


def _expand_path(emulator: Emulator, node: JSON, path: list[str], full_path: str) -> None:
    head, rest = path[0], path[1:]
    if node.get("object") == "list" and head == "data":
        for item in node["data"]:
            if rest:
                _expand_path(emulator, item, rest, full_path)
        return
    expandable = head in EXPANDABLE.get(node.get("object", ""), set()) or (
        "object" not in node and head in NESTED_EXPANDABLE
    )
    if not expandable and not (rest and isinstance(node.get(head), dict)):
        raise invalid_param("expand", f"This property cannot be expanded ({full_path}).")
    if expandable and head == "line_items":
        session_id = node["id"]
        node["line_items"] = objects.list_object(
            f"/v1/checkout/sessions/{session_id}/line_items",
            checkout.line_items(emulator, session_id),
            has_more=False,
        )
    elif expandable and isinstance(node.get(head), str):
        found = emulator.store.find(node[head])
        if found is not None:
            node[head] = found.data
    if rest and isinstance(node.get(head), dict):
        _expand_path(emulator, node[head], rest, full_path)


def _list(
    call: ApiCall,
    object_type: str,
    *,
    parent: str | None = None,
    equals: dict[str, str] | None = None,
    type_pattern: str | None = None,
    newest_first: bool = True,
) -> JSON:
    params = call.params
    limit = params.integer("limit", minimum=1)
    if limit is not None and limit > 100:
        raise invalid_param("limit", "This value must be less than or equal to 100.")
    cursors = {name: params.string(name) for name in ("starting_after", "ending_before")}
    for name, cursor in cursors.items():
        if cursor is not None:
            call.emulator.load(object_type, cursor, param=name)
    page = call.emulator.store.page(
        object_type,
        limit=limit or 10,
        starting_after=cursors["starting_after"],
        ending_before=cursors["ending_before"],
        parent=parent,
        equals=equals,
        type_pattern=type_pattern,
        newest_first=newest_first,
    )
    return objects.list_object(call.url_path, page.data, page.has_more)


def _filtered_list(call: ApiCall, object_type: str, filters: tuple[str, ...]) -> JSON:
    """A list filtered on equality of the given top-level fields."""
    call.params.reject_unknown({"limit", "starting_after", "ending_before", "expand", *filters})
    equals = {name: value for name in filters if (value := call.params.string(name)) is not None}
    return _list(call, object_type, equals=equals)


def _retrieve(call: ApiCall, object_type: str, param: str) -> JSON:
    call.params.reject_unknown({"expand"})
    return call.emulator.load(object_type, call.path[param], param=param).data


def stripe_endpoint(method: str, path: str) -> Callable[[Handler], Handler]:
    """Register a handler as a Stripe API route behind auth, idempotency and error handling."""

    def register(handler: Handler) -> Handler:
        async def endpoint(request: Request) -> Response:
            return await _serve(request, handler)

        router.add_api_route(
            path, endpoint, methods=[method], name=handler.__name__, include_in_schema=False
        )
        return handler

    return register


@stripe_endpoint("POST", "/v1/customers")
def create_customer(call: ApiCall) -> JSON:
    return customers.create_customer(call.emulator, call.params, call.cause)


@stripe_endpoint("GET", "/v1/customers")
def list_customers(call: ApiCall) -> JSON:
    return _filtered_list(call, "customer", ("email",))


@stripe_endpoint("GET", "/v1/customers/{customer}")
def retrieve_customer(call: ApiCall) -> JSON:
    return _retrieve(call, "customer", "customer")


@stripe_endpoint("POST", "/v1/customers/{customer}")
def update_customer(call: ApiCall) -> JSON:
    return customers.update_customer(call.emulator, call.path["customer"], call.params, call.cause)


PAYMENT_METHOD_LIST_PARAMS = {"limit", "starting_after", "ending_before", "type", "expand"}


def _list_payment_methods(call: ApiCall, customer_id: str | None) -> JSON:
    payment_type = call.params.string("type")
    if payment_type not in (None, "card"):
        return objects.list_object(call.url_path, [], has_more=False)
    equals = {} if customer_id is None else {"customer": customer_id}
    return _list(call, "payment_method", equals=equals)


@stripe_endpoint("GET", "/v1/customers/{customer}/payment_methods")
def list_customer_payment_methods(call: ApiCall) -> JSON:
    call.params.reject_unknown(PAYMENT_METHOD_LIST_PARAMS)
    customer_id = call.path["customer"]
    call.emulator.load("customer", customer_id, param="customer")
    return _list_payment_methods(call, customer_id)


@stripe_endpoint("GET", "/v1/customers/{customer}/payment_methods/{payment_method}")
def retrieve_customer_payment_method(call: ApiCall) -> JSON:
    payment_method = _retrieve(call, "payment_method", "payment_method")
    customer_id = call.path["customer"]
    call.emulator.load("customer", customer_id, param="customer")
    if payment_method["customer"] != customer_id:
        raise no_such("payment method", payment_method["id"], "payment_method")
    return payment_method


@stripe_endpoint("POST", "/v1/payment_methods")
def create_payment_method(call: ApiCall) -> JSON:
    return cards.create_payment_method(call.emulator, call.params)


@stripe_endpoint("GET", "/v1/payment_methods")
def list_payment_methods(call: ApiCall) -> JSON:
    call.params.reject_unknown({*PAYMENT_METHOD_LIST_PARAMS, "customer"})
    customer_id = call.params.string("customer")
    if customer_id is not None:
        call.emulator.load("customer", customer_id, param="customer")
    return _list_payment_methods(call, customer_id)


@stripe_endpoint("GET", "/v1/payment_methods/{payment_method}")
def retrieve_payment_method(call: ApiCall) -> JSON:
    return _retrieve(call, "payment_method", "payment_method")


@stripe_endpoint("POST", "/v1/payment_methods/{payment_method}/attach")
def attach_payment_method(call: ApiCall) -> JSON:
    call.params.reject_unknown({"customer", "expand"})
    customer_id = call.params.required_string("customer")
    stored = cards.payment_method(call.emulator, call.path["payment_method"], "payment_method")
    return cards.attach(call.emulator, stored, customer_id, call.cause)


@stripe_endpoint("POST", "/v1/payment_methods/{payment_method}/detach")
def detach_payment_method(call: ApiCall) -> JSON:
    call.params.reject_unknown({"expand"})
    return cards.detach(call.emulator, call.path["payment_method"], call.cause)


@stripe_endpoint("POST", "/v1/payment_intents")
def create_payment_intent(call: ApiCall) -> JSON:
    return payment_intents.create_payment_intent(call.emulator, call.params, call.cause)


@stripe_endpoint("POST", "/v1/payment_intents/{intent}/confirm")
def confirm_payment_intent(call: ApiCall) -> JSON:
    return payment_intents.confirm_payment_intent(
        call.emulator, call.path["intent"], call.params, call.cause
    )


@stripe_endpoint("POST", "/v1/payment_intents/{intent}/cancel")
def cancel_payment_intent(call: ApiCall) -> JSON:
    return payment_intents.cancel_payment_intent(
        call.emulator, call.path["intent"], call.params, call.cause
    )


@stripe_endpoint("GET", "/v1/payment_intents")
def list_payment_intents(call: ApiCall) -> JSON:
    return _filtered_list(call, "payment_intent", ("customer",))


@stripe_endpoint("POST", "/v1/setup_intents")
def create_setup_intent(call: ApiCall) -> JSON:
    return setup_intents.create_setup_intent(call.emulator, call.params, call.cause)


@stripe_endpoint("GET", "/v1/setup_intents")
def list_setup_intents(call: ApiCall) -> JSON:
    return _filtered_list(call, "setup_intent", ("customer", "payment_method"))


@stripe_endpoint("GET", "/v1/setup_intents/{intent}")
def retrieve_setup_intent(call: ApiCall) -> JSON:
    return _retrieve(call, "setup_intent", "intent")


@stripe_endpoint("POST", "/v1/checkout/sessions")
def create_checkout_session(call: ApiCall) -> JSON:
    return checkout.create_session(call.emulator, call.params, call.cause, call.base_url)


@stripe_endpoint("GET", "/v1/checkout/sessions")
def list_checkout_sessions(call: ApiCall) -> JSON:
    return _filtered_list(call, "checkout.session", ("customer", "payment_intent", "status"))


@stripe_endpoint("GET", "/v1/checkout/sessions/{session}")
def retrieve_checkout_session(call: ApiCall) -> JSON:
    return _retrieve(call, "checkout.session", "session")


@stripe_endpoint("GET", "/v1/checkout/sessions/{session}/line_items")
def list_checkout_session_line_items(call: ApiCall) -> JSON:
    call.params.reject_unknown({"limit", "starting_after", "ending_before", "expand"})
    session_id = call.path["session"]
    call.emulator.load("checkout.session", session_id, param="session")
    return _list(call, "item", parent=session_id, newest_first=False)


@stripe_endpoint("POST", "/v1/checkout/sessions/{session}/expire")
def expire_checkout_session(call: ApiCall) -> JSON:
    call.params.reject_unknown({"expand"})
    return checkout.expire_session(call.emulator, call.path["session"], call.cause)


@stripe_endpoint("GET", "/v1/payment_intents/{intent}")
def retrieve_payment_intent(call: ApiCall) -> JSON:
    return _retrieve(call, "payment_intent", "intent")


@stripe_endpoint("GET", "/v1/charges/{charge}")
def retrieve_charge(call: ApiCall) -> JSON:
    return _retrieve(call, "charge", "charge")


@stripe_endpoint("POST", "/v1/refunds")
def create_refund(call: ApiCall) -> JSON:
    return refunds.create_refund(call.emulator, call.params, call.cause)


@stripe_endpoint("GET", "/v1/refunds/{refund}")
def retrieve_refund(call: ApiCall) -> JSON:
    return _retrieve(call, "refund", "refund")


def _with_pending_webhooks(emulator: Emulator, event: JSON) -> JSON:
    return {**event, "pending_webhooks": emulator.store.pending_delivery_count(event["id"])}


@stripe_endpoint("GET", "/v1/events")
def list_events(call: ApiCall) -> JSON:
    call.params.reject_unknown({"limit", "starting_after", "ending_before", "type", "expand"})
    # `type` accepts one `*` wildcard, as in `checkout.session.*`.
    event_type = call.params.string("type")
    type_pattern = None if event_type is None else event_type.replace("[", "[[]")
    events = _list(call, "event", type_pattern=type_pattern)
    events["data"] = [_with_pending_webhooks(call.emulator, event) for event in events["data"]]
    return events


@stripe_endpoint("GET", "/v1/events/{event}")
def retrieve_event(call: ApiCall) -> JSON:
    return _with_pending_webhooks(call.emulator, _retrieve(call, "event", "event"))


@router.api_route(
    "/v1/{unknown:path}", methods=["GET", "POST", "DELETE", "PUT", "PATCH"], include_in_schema=False
)
async def unknown_route(request: Request) -> Response:
    error = StripeError(
        f"Unrecognized request URL ({request.method}: {request.url.path}). Please see "
        "https://stripe.com/docs or we can help at https://support.stripe.com/.",
        status=404,
    )
    return _json_response(error.status, error.body(), {"Stripe-Version": API_VERSION})
