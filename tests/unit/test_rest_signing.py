"""The REST ERP connector's pure parts: each signing scheme against golden values computed by
hand from the documented strings (hashlib and hmac on the text written out below, not our
functions), and the mapping's bodies, units and dates."""

from __future__ import annotations

import pytest

from cloud_bridge.rest.connector import RestConnector, retry_after
from cloud_bridge.rest.mapping import Answer, Command, DateField, Lines, RestMapping
from cloud_bridge.rest.signing import HmacSha256Canonical, Md5SortedParams, Request
from storeedge.errors import ErpRejected, UsageError

BODY = b'{"a":1}'


def test_md5_sorted_params_matches_the_documented_vector() -> None:
    # md5("s3cret" "app_key" "k1" "body" '{"a":1}' "nonce" "n-1" "shop_id" "BJ01"
    #     "sign_method" "md5" "timestamp" "1764300000" "s3cret"), upper-case hex
    signed = Md5SortedParams("k1", "s3cret").sign(
        Request("POST", "/erp/open/sales", {"shop_id": "BJ01"}, BODY), 1764300000.9, "n-1")
    assert signed.query == {"shop_id": "BJ01", "app_key": "k1", "timestamp": "1764300000",
                            "nonce": "n-1", "sign_method": "md5",
                            "sign": "29A554B751BBBBE765654695BD47104D"}
    assert signed.headers == {}


def test_hmac_sha256_canonical_request_matches_the_documented_vector() -> None:
    scheme = HmacSha256Canonical("k1", "s3cret")
    request = Request("POST", "/erp/open/sales", {"shop_id": "BJ01", "b": "x y"}, BODY)
    assert scheme.canonical(request, "1764300000123", "n-2") == (
        "POST\n/erp/open/sales\nb=x%20y&shop_id=BJ01\n1764300000123\nn-2\n"
        "015abd7f5cc57a2dd94b7590f04ad8084273905ee33ec5cebeae62276a97f862")
    signed = scheme.sign(request, 1764300000.123, "n-2")
    assert signed.headers == {"X-App-Key": "k1", "X-Timestamp": "1764300000123",
                              "X-Nonce": "n-2",
                              "X-Signature": "TgGkwrn6rhGVtyP9F5yTAHspFxWn1oUY9AuwrnGNsa4="}
    assert signed.query == {}


def test_hmac_sha256_signs_a_get_without_a_body_over_the_empty_digest() -> None:
    signed = HmacSha256Canonical("k1", "s3cret").sign(
        Request("GET", "/open/stock", {"shop_id": "BJ01"}), 1764300000.0, "n-3")
    assert signed.headers["X-Signature"] == "NKW9zN2U8526082PUrVxWvZ19JHO7WL+58MYjGcajU0="


def test_a_scheme_never_shows_its_secret() -> None:
    for scheme in (Md5SortedParams("k1", "s3cret"), HmacSha256Canonical("k1", "s3cret")):
        assert "s3cret" not in repr(scheme) and "s3cret" not in str(scheme)


def test_a_command_body_carries_key_their_names_their_units_and_their_date() -> None:
    command = Command(path="/open/sales", key_field="out_no",
                      lines=Lines(field="items", sku="sku_id", factor=1000),
                      date=DateField(field="biz_time", format="%Y-%m-%d %H:%M:%S",
                                     timezone="Asia/Shanghai"),
                      receipts_field="remark", fixed={"shop_id": "BJ01"})
    # 1764320400 is 2025-11-28 09:00:00 UTC
    assert command.body("bj:sales:20251128T090000Z", [("COLA", 2), ("TEA", -1)], 1764320400,
                        ["T-1", "T-2"]) == {
        "shop_id": "BJ01", "out_no": "bj:sales:20251128T090000Z",
        "items": [{"sku_id": "COLA", "qty": 2000}, {"sku_id": "TEA", "qty": -1000}],
        "biz_time": "2025-11-28 17:00:00", "remark": ["T-1", "T-2"]}


@pytest.mark.parametrize(("fmt", "zone", "text"), [
    ("iso", "UTC", "2025-11-28T09:00:00+00:00"),
    ("iso", "Asia/Shanghai", "2025-11-28T17:00:00+08:00"),
    ("epoch_s", "UTC", 1764320400),
    ("epoch_ms", "UTC", 1764320400000),
    ("%Y%m%d", "Asia/Shanghai", "20251128"),
])
def test_date_formats(fmt: str, zone: str, text: str | int) -> None:
    assert DateField(field="d", format=fmt, timezone=zone).render(1764320400) == text


def test_their_quantities_become_our_units() -> None:
    lines = Lines(factor=1000)
    assert lines.theirs(3) == 3000 and lines.ours(2999.6, "x") == 3
    assert Lines(factor=0.5).theirs(3) == 1.5
    with pytest.raises(ErpRejected, match="stock item 2: quantity 'lots' is not a number"):
        lines.ours("lots", "stock item 2")


async def test_a_command_the_mapping_does_not_declare_is_a_usage_error() -> None:
    mapping = RestMapping.model_validate({
        "app_key": "k1", "signing": "md5_sorted",
        "commands": {"book_sales": {"path": "/s"}, "stock_units": {"path": "/q"}}})
    erp = RestConnector("http://127.0.0.1:9/", mapping, "s3cret")
    try:
        with pytest.raises(UsageError, match=r"no endpoint for book_order "
                                             r"\(erp\.rest\.commands\.book_order\)"):
            await erp.book_order("k", [("COLA", 1)])
    finally:
        await erp.aclose()


def test_result_codes_in_a_200_answer_compare_as_text() -> None:
    answer = Answer(ok=[0], duplicate=["E1062"], retry=[429, "BUSY"])
    assert [answer.means(c) for c in (0, "0", "E1062", "429", "BUSY", 400, None)] == [
        "ok", "ok", "duplicate", "retry", "retry", "refused", "refused"]


@pytest.mark.parametrize(("value", "seconds"), [
    ("7", 7.0),
    ("Fri, 28 Nov 2025 09:00:30 GMT", 30.0),  # an HTTP date, 30 s after 1764320400
    ("Fri, 28 Nov 2025 08:59:00 GMT", 0.0),  # already past
    ("86400", 300.0),  # capped
    ("soon", 1.0),
])
def test_retry_after_in_seconds_or_as_an_http_date(value: str, seconds: float) -> None:
    assert retry_after(value, 1764320400.0, 300.0) == seconds
