"""normalize and validate: rule a (harmonisation) and rule b (invalid records) of the fraud topology."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from step_harness import build, run_step, topology, txn

from stream_orch.steps.common import Invalid, StepConfigError

# the score_transactions normalize step of topologies/fraud_detection.yaml
FRAUD_NORMALIZE = {
    "step": "normalize",
    "fields": {
        "txn_id": {"type": "string", "strip": True},
        "customer_id": {"id": {"prefix": "C-", "digits": 6}},
        "currency": {"case": "upper", "strip": True, "one_of": ["EUR", "USD", "GBP", "CHF", "JPY"]},
        "amount": {"type": "float", "gt": 0},
        "ts": {"timestamp": "epoch_ms"},
        "country": {"case": "upper", "strip": True},
    },
}

T_MS = 1_700_000_000_000  # 2023-11-14T22:13:20Z


async def normalize(record, spec=FRAUD_NORMALIZE):
    out, ctx = await run_step(build(spec), [record])
    return (out[0] if out else None), ctx.reject_reasons


# --------------------------------------------------------------------------- rule a


# "C-" + six Arabic-Indic digits: the canonical length, yet rendered in ASCII digits
ARABIC_INDIC_123 = "C-\u0660\u0660\u0660\u0661\u0662\u0663"


@pytest.mark.parametrize(
    "given",
    [123, "123", "C123", "C-000123", " c-123 ", "C_123", 123.0, "C-0000123", ARABIC_INDIC_123],
)
async def test_customer_id_forms_become_canonical(given):
    out, reasons = await normalize(txn(customer_id=given))
    assert reasons == []
    assert out["customer_id"] == "C-000123"


@pytest.mark.parametrize(
    ("given", "why"),
    [
        ("abc", "must be a number with an optional 'C-' prefix (got 'abc')"),
        ("X123", "must be a number with an optional 'C-' prefix (got 'X123')"),
        ("C12-34", "must be a number with an optional 'C-' prefix"),
        ("C123x", "must be a number with an optional 'C-' prefix"),
        (1234567, "must be a number of at most 6 digits (got 1234567)"),
        (-5, "must be a number of at most 6 digits (got -5)"),
        (True, "must be an identifier (got True)"),
        ([1], "must be an identifier"),
    ],
)
async def test_customer_id_without_usable_digits_is_rejected(given, why):
    out, reasons = await normalize(txn(customer_id=given))
    assert out is None
    assert reasons[0].startswith("invalid_field: customer_id ")
    assert why in reasons[0]


@pytest.mark.parametrize("given", ["eur", " usd ", "Gbp", "CHF", "jpy"])
async def test_currency_is_upper_cased(given):
    out, reasons = await normalize(txn(currency=given))
    assert reasons == []
    assert out["currency"] == given.strip().upper()


@pytest.mark.parametrize(
    ("given", "expected"), [(12, 12.0), (12.5, 12.5), ("12.50", 12.5), (" 7 ", 7.0), ("1e3", 1000.0)]
)
async def test_amount_number_or_numeric_string(given, expected):
    out, reasons = await normalize(txn(amount=given))
    assert reasons == []
    assert out["amount"] == expected and type(out["amount"]) is float


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (T_MS, T_MS),  # epoch ms
        (T_MS // 1000, T_MS),  # epoch seconds
        (T_MS / 1000 + 0.25, T_MS + 250),  # fractional epoch seconds
        (str(T_MS), T_MS),  # numeric strings
        (str(T_MS // 1000), T_MS),
        ("2023-11-14T22:13:20Z", T_MS),  # ISO-8601 with an offset
        ("2023-11-14T22:13:20.123+00:00", T_MS + 123),
        ("2023-11-15T00:13:20+02:00", T_MS),
        ("2023-11-14T17:13:20-05:00", T_MS),
        ("2023-11-14 22:13:20Z", T_MS),
    ],
)
async def test_ts_becomes_epoch_ms_utc(given, expected):
    out, reasons = await normalize(txn(ts=given))
    assert reasons == []
    assert out["ts"] == expected and type(out["ts"]) is int


@pytest.mark.parametrize("given", ["de", " fr ", "Ch"])
async def test_country_is_upper_cased(given):
    out, _ = await normalize(txn(country=given))
    assert out["country"] == given.strip().upper()


async def test_txn_id_number_becomes_string_and_is_stripped():
    assert (await normalize(txn(txn_id=42)))[0]["txn_id"] == "42"
    assert (await normalize(txn(txn_id=" t-9 ")))[0]["txn_id"] == "t-9"


# --------------------------------------------------------------------------- rule b


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        (txn(txn_id=...), "missing_field: txn_id is required"),
        (txn(txn_id=None), "missing_field: txn_id is required"),
        (txn(amount=-5), "invalid_field: amount must be > 0 (got -5.0)"),
        (txn(amount=0), "invalid_field: amount must be > 0 (got 0.0)"),
        (txn(amount="-3"), "invalid_field: amount must be > 0 (got -3.0)"),
        (txn(amount="12x"), "invalid_field: amount is not a number (got '12x')"),
        (txn(amount="nan"), "invalid_field: amount is not a number (got 'nan')"),
        (txn(amount=float("inf")), "invalid_field: amount must be a finite number (got inf)"),
        (txn(amount=True), "invalid_field: amount must be a number (got True)"),
        (txn(amount={"v": 1}), "invalid_field: amount must be a number (got {'v': 1})"),
        (txn(amount=...), "missing_field: amount is required"),
        (txn(currency="XYZ"), "invalid_field: currency must be one of EUR, USD, GBP, CHF, JPY (got 'XYZ')"),
        (txn(currency=5), "invalid_field: currency must be one of EUR, USD, GBP, CHF, JPY (got 5)"),
        (txn(ts="yesterday"), "invalid_field: ts is not epoch ms, epoch s or ISO-8601 (got 'yesterday')"),
        (txn(ts="2023-11-14T22:13:20"), "invalid_field: ts has no UTC offset (got '2023-11-14T22:13:20')"),
        (txn(ts="2023-13-45T00:00:00Z"), "invalid_field: ts is not epoch ms, epoch s or ISO-8601"),
        (txn(ts=True), "invalid_field: ts is not a timestamp (got True)"),
        (txn(ts=-1), "invalid_field: ts is out of range for a timestamp (got -1)"),
        (txn(ts=10**17), "invalid_field: ts is out of range for a timestamp"),
        (txn(ts=...), "missing_field: ts is required"),
    ],
)
async def test_invalid_records_are_rejected_with_a_reason_naming_the_field(record, reason):
    out, reasons = await normalize(record)
    assert out is None
    assert len(reasons) == 1
    assert reasons[0].startswith(reason)


async def test_a_bad_record_does_not_stop_the_batch():
    step = build(FRAUD_NORMALIZE)
    out, ctx = await run_step(step, [txn(txn_id="a"), txn(txn_id="b", amount="x"), txn(txn_id="c")])
    assert [r["txn_id"] for r in out] == ["a", "c"]
    assert ctx.reject_reasons == ["invalid_field: amount is not a number (got 'x')"]


# --------------------------------------------------------------------------- other rule attributes


async def test_defaults_optional_fields_and_rule_order():
    spec = {
        "step": "normalize",
        "fields": {
            "tier": {"default": " Low ", "strip": True, "case": "lower", "one_of": ["low", "high"]},
            "note": {"required": False, "strip": True},
            "n": {"type": "int", "ge": 1, "le": 10},
            "flag": {"type": "bool", "required": False},
            "code": {"pattern": "[A-Z]{2}", "case": "upper"},
        },
    }
    out, reasons = await normalize({"n": "3", "flag": "yes", "code": "de"}, spec)
    assert reasons == []
    assert out == {"tier": "low", "n": 3, "flag": True, "code": "DE"}
    assert "note" not in out
    assert (await normalize({"n": "3.5", "code": "DE"}, spec))[1] == [
        "invalid_field: n must be an integer (got '3.5')"
    ]
    assert (await normalize({"n": 11, "code": "DE"}, spec))[1] == ["invalid_field: n must be <= 10 (got 11)"]
    assert (await normalize({"n": 1, "code": "D1"}, spec))[1] == [
        "invalid_field: code must match '[A-Z]{2}' (got 'D1')"
    ]
    assert (await normalize({"n": 1, "code": "DE", "flag": "maybe"}, spec))[1] == [
        "invalid_field: flag must be a boolean (got 'maybe')"
    ]


async def test_field_names_that_are_not_identifiers_and_defaults_that_are_copied():
    """The rules run as one generated function (steps/normalize.py, _fuse): any field name, and
    a mutable default is a fresh copy per record."""
    spec = {
        "step": "normalize",
        "fields": {
            'it\'s "odd"\n': {"strip": True, "case": "upper", "required": False},
            "tags": {"default": ["a"]},
            "a-b": {"required": True},
        },
    }
    first, reasons = await normalize({'it\'s "odd"\n': " x ", "a-b": 1}, spec)
    assert reasons == [] and first == {'it\'s "odd"\n': "X", "a-b": 1, "tags": ["a"]}
    second, _ = await normalize({"a-b": 2}, spec)
    first["tags"].append("b")
    assert second["tags"] == ["a"]
    assert (await normalize({}, spec))[1] == ["missing_field: a-b is required"]


def test_bad_pattern_is_a_config_error():
    with pytest.raises(StepConfigError, match="invalid pattern"):
        build({"step": "normalize", "fields": {"x": {"pattern": "("}}})


# --------------------------------------------------------------------------- validate


async def test_validate_uses_the_input_topic_schema():
    step = build({"step": "validate"})
    assert step.schema_name == "transaction"
    out, ctx = await run_step(step, [txn(), txn(amount="12x"), txn(channel="phone"), txn(merchant_id=...)])
    assert len(out) == 1
    assert ctx.reject_reasons == [
        "schema_violation: field 'amount': expected double, got str '12x'",
        "schema_violation: field 'channel': expected one of card_present, online, atm, got str 'phone'",
        "schema_violation: field 'merchant_id': missing (expected string)",
    ]


async def test_validate_named_schema_and_config_errors():
    step = build({"step": "validate", "schema": "customer"})
    record = {"customer_id": "C-000001", "home_country": "DE", "risk_tier": "low", "avg_amount": 10}
    out, ctx = await run_step(step, [record, dict(record, risk_tier="extreme")])
    assert len(out) == 1
    assert ctx.reject_reasons == [
        "schema_violation: field 'risk_tier': expected one of low, medium, high, got str 'extreme'"
    ]
    with pytest.raises(StepConfigError, match="unknown schema 'nope'"):
        build({"step": "validate", "schema": "nope"})
    no_schema = topology(topics={"transactions": {}, "out": {}})
    with pytest.raises(StepConfigError, match="validate needs"):
        build({"step": "validate"}, no_schema)


_ANY = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**15), 10**15),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([float("inf"), float("-inf"), float("nan"), 0.0, -1.5, 5.0]),
    st.sampled_from(
        ["", " eur ", "EUR", "usd", "DE", "de ", "D1", "C-000123", "C7", "12.5", " 7 ", "1e3", "x"]
    ),
    st.sampled_from([1_700_000_000_000, 10**11, 10**14 - 1, 10**14, 99_999_999_999, 0]),
)
_RULES_SPEC = {
    "step": "normalize",
    "fields": {
        **FRAUD_NORMALIZE["fields"],  # type: ignore[dict-item]
        "country": {"case": "upper", "strip": True, "pattern": "[A-Z]{2}"},
        "n": {"type": "int", "ge": 1, "lt": 10},
        "tier": {"default": " Low ", "strip": True, "case": "lower", "one_of": ["low", "high", True]},
        "flag": {"type": "bool", "required": False},
        "price": {"type": "float", "le": 1000, "required": False},
        "level": {"one_of": [0, 1, 2], "required": False},  # True == 1, yet refused
    },
}


def _reference(step, record):  # type: ignore[no-untyped-def]
    """The field rules applied one operation call at a time, as the step did before."""
    for f in step._fields:
        v = record.get(f.name)
        if v is None:
            if f.has_default:
                v = copy.copy(f.default)
            elif f.required:
                raise Invalid(f"missing_field: {f.name} is required")
            else:
                continue
        for op in f.ops:
            v = op(v)
        record[f.name] = v


# a value each rule accepts, so that records get past their first fields
_GOOD = {
    "txn_id": " T-1 ",
    "customer_id": "C-000123",
    "currency": " eur ",
    "amount": 12.5,
    "ts": 1_700_000_000_000,
    "country": "de",
    "n": 3,
    "tier": None,
    "flag": "yes",
    "price": 10,
    "level": 2,
}


def _with(fields: list[str], values: list[object]) -> dict[str, object]:
    """The good record with ``fields`` set to ``values`` (None: left out)."""
    record = dict(_GOOD)
    for f, v in zip(fields, values, strict=False):
        record[f] = v
    return {k: v for k, v in record.items() if v is not None}


# one or two fields at a time get any value: each rule is reached with anything
_RECORDS = st.builds(
    _with,
    st.lists(st.sampled_from(list(_GOOD)), min_size=1, max_size=2),
    st.lists(_ANY, min_size=2, max_size=2),
)


@settings(max_examples=600, deadline=None)
@given(record=_RECORDS)
def test_the_generated_rules_equal_the_operations_called_one_by_one(record):
    """Each operation's fast test in the generated code lets through only values the operation
    returns as they are: same record, or the same reason, as calling every operation."""
    step = build(_RULES_SPEC)
    fused, alone = dict(record), dict(record)
    try:
        step.normalize(fused)
        fused_error = None
    except Exception as exc:
        fused_error = f"{type(exc).__name__}: {exc}"
    try:
        _reference(step, alone)
        alone_error = None
    except Exception as exc:
        alone_error = f"{type(exc).__name__}: {exc}"
    assert fused_error == alone_error
    if fused_error is None:
        assert repr(fused) == repr(alone)  # nan, and int against float, told apart


@settings(max_examples=500, deadline=None)
@given(
    prefix=st.sampled_from(["C-", "", "a.b", "X*"]),
    digits=st.integers(1, 8),
    value=st.one_of(st.text(alphabet="C-0123456789a.bX*\n٣ ", max_size=12), st.integers(-5, 10**9)),
)
def test_an_id_the_generated_code_takes_as_it_is_is_one_the_rule_returns_unchanged(prefix, digits, value):
    """The id rule's fast test (a regular expression over the canonical form) lets only values
    through that its operation would return as they are."""
    from stream_orch.steps.normalize import _id_op

    op = _id_op("id", prefix, digits)
    test, fullmatch = op.fast
    if eval(test.format("fullmatch"), {"fullmatch": fullmatch, "str": str}, {"v": value}):
        assert op(value) is value
    elif isinstance(value, str) and len(value) == len(prefix) + digits and value.startswith(prefix):
        tail = value[len(prefix) :]
        assert not (tail.isascii() and tail.isdigit())


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.text(alphabet="AZaz1 ", max_size=3), max_size=40), kept=st.integers(1, 5))
def test_the_pattern_test_remembers_matches_and_answers_as_the_regex(values, kept):
    """A pattern's fast test keeps the strings that matched (bounded): asked again, in any order,
    it answers as the full match does, and never keeps a string that does not match."""
    import re

    from stream_orch.steps import normalize as module

    fullmatch = re.compile("[A-Z]{2}").fullmatch
    matches = module._Matches(fullmatch)
    saved, module._MATCHES_KEPT = module._MATCHES_KEPT, kept
    try:
        test = module._MATCHES_TEST.format("m")
        for value in values + values[::-1]:
            assert eval(test, {"m": matches, "str": str}, {"v": value}) == (fullmatch(value) is not None)
            assert len(matches) <= kept and all(fullmatch(s) for s in matches)
    finally:
        module._MATCHES_KEPT = saved
