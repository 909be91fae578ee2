"""Stripe's form encoding, as the SDK sends it, decoded into nested parameters."""

from __future__ import annotations

import urllib.parse

import pytest

from stripe_emulator.errors import StripeError
from stripe_emulator.forms import Params, decode_pairs


def test_brackets_nest_objects_and_indexed_lists() -> None:
    body = (
        "mode=payment&line_items[0][quantity]=2"
        "&line_items[0][price_data][product_data][metadata][gpu]=h100"
        "&line_items[1][quantity]=1&metadata[order_id]=o_1&expand[0]=line_items"
    )
    params = decode_pairs(urllib.parse.parse_qsl(body))
    assert params == {
        "mode": "payment",
        "line_items": [
            {"quantity": "2", "price_data": {"product_data": {"metadata": {"gpu": "h100"}}}},
            {"quantity": "1"},
        ],
        "metadata": {"order_id": "o_1"},
        "expand": ["line_items"],
    }


def test_percent_encoded_query_and_empty_brackets_append() -> None:
    query = "expand%5B0%5D=payment_intent&expand%5B1%5D=line_items&types[]=a&types[]=b"
    params = decode_pairs(urllib.parse.parse_qsl(query))
    assert params == {"expand": ["payment_intent", "line_items"], "types": ["a", "b"]}


def test_indices_order_numerically_not_lexically() -> None:
    pairs = [(f"line_items[{index}][quantity]", str(index)) for index in (10, 2, 1, 0)]
    quantities = [item["quantity"] for item in decode_pairs(pairs)["line_items"]]
    assert quantities == ["0", "1", "2", "10"]


def test_a_value_and_an_object_under_one_name_are_refused() -> None:
    with pytest.raises(StripeError) as refused:
        decode_pairs([("metadata", "x"), ("metadata[a]", "b")])
    assert refused.value.status == 400


def test_params_name_nested_errors_like_stripe() -> None:
    params = Params(decode_pairs([("line_items[0][quantity]", "two")]))
    with pytest.raises(StripeError) as refused:
        params.items("line_items")[0].required_integer("quantity")
    assert refused.value.param == "line_items[0][quantity]"
    assert refused.value.code == "parameter_invalid_integer"
