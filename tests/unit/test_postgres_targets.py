"""The `postgres:` route target: model, lint, the sink built for it, and `stream-orch sink init`."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from stream_orch.cli.main import main
from stream_orch.codecs.schemas import SchemaRegistry
from stream_orch.sinks import build_sinks
from stream_orch.sinks.postgres_sink import PostgresSink
from stream_orch.topology.lint import lint
from stream_orch.topology.loader import SpecError, load_topology
from stream_orch.topology.models_delivery import PostgresTarget, external_targets

SCHEMA = {
    "type": "record", "name": "Balance",
    "fields": [
        {"name": "account", "type": "string"},
        {"name": "amount", "type": "double"},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "note", "type": ["null", "string"], "default": None},
    ],
}
TOPOLOGY = """
topology: pg
topics:
  payments: {partitions: 2, key: account}
  payments.dlq: {partitions: 1}
nodes:
  deliver:
    input: payments
    routes:
      - to:
          - {postgres: {name: balances, dsn_env: PG_DSN, table: public.balances, mode: upsert,
                        key: [KEY], schema: balance}}
          - {postgres: {dsn_env: PG_DSN, table: ledger, schema: balance}}
    errors:
      dlq: payments.dlq
"""


def write(tmp_path: Path, key: str = "account") -> Path:
    schemas = tmp_path / "schemas"
    schemas.mkdir(exist_ok=True)
    (schemas / "balance.avsc").write_bytes(orjson.dumps(SCHEMA))
    path = tmp_path / "pg.yaml"
    path.write_text(TOPOLOGY.replace("KEY", key))
    return path


def test_targets_parsed_and_named(tmp_path: Path) -> None:
    spec = load_topology(write(tmp_path), {}).spec
    named = external_targets(spec.nodes["deliver"])
    assert [(t.kind, t.name) for t in named] == [("postgres", "balances"), ("postgres", "postgres")]
    upsert = named[0].spec
    assert isinstance(upsert, PostgresTarget)
    assert (upsert.table, upsert.mode, upsert.key, upsert.dsn_env) == ("public.balances", "upsert",
                                                                       ["account"], "PG_DSN")
    assert named[1].spec.mode == "insert"


BAD = {
    "upsert without key": (("key: [KEY], ", ""), "mode upsert needs `key`"),
    "a DSN written in the file": (("dsn_env: PG_DSN, table: public",
                                   "dsn_env: 'postgresql://u:pw@h/db', table: public"), "dsn_env"),
    "a table name that is SQL": (("table: public.balances", "table: 'balances; drop table x'"), "table"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_targets_are_one_problem_at_their_line(tmp_path: Path, case: str) -> None:
    (old, new), words = BAD[case]
    path = write(tmp_path)
    path.write_text(TOPOLOGY.replace(old, new).replace("KEY", "account"))
    with pytest.raises(SpecError) as err:
        load_topology(path, {})
    text = "\n".join(str(p) for p in err.value.problems)
    assert words in text and "pg.yaml:" in text, text


def test_lint_key_column_must_be_a_field_and_no_retry_tiers_needed(tmp_path: Path) -> None:
    path = write(tmp_path, key="acount")
    problems = [p for p in lint(load_topology(path, {}), tmp_path / "schemas") if p.severity == "error"]
    assert len(problems) == 1, problems
    assert "key column `acount` is not a field of schema `balance`" in problems[0].message
    assert "did you mean `account`" in str(problems[0])
    good = write(tmp_path)
    assert [p for p in lint(load_topology(good, {}), tmp_path / "schemas") if p.severity == "error"] == []


def test_the_sink_is_built_with_columns_from_the_schema(tmp_path: Path) -> None:
    spec = load_topology(write(tmp_path), {}).spec
    sinks = build_sinks(spec, "deliver", schemas=SchemaRegistry(tmp_path / "schemas"))
    assert set(sinks) == {"balances", "postgres"}
    sink = sinks["balances"]
    assert isinstance(sink, PostgresSink)
    assert [(c.name, c.sql_type) for c in sink.cols] == [
        ("account", "text"), ("amount", "double precision"), ("ts", "timestamptz"), ("note", "text")]


async def test_an_unset_dsn_variable_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stream_orch.errors import UserError

    monkeypatch.delenv("PG_DSN", raising=False)
    spec = load_topology(write(tmp_path), {}).spec
    sink = build_sinks(spec, "deliver", schemas=SchemaRegistry(tmp_path / "schemas"))["balances"]
    with pytest.raises(UserError, match=r"environment variable PG_DSN .* is not set"):
        await sink.start()


def test_sink_init_prints_the_tables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path)
    assert main(["sink", "init", str(path), "--schemas", str(tmp_path / "schemas")]) == 0
    out = capsys.readouterr().out
    assert "CREATE TABLE IF NOT EXISTS stream_orch_offsets" in out
    assert "CREATE TABLE IF NOT EXISTS stream_orch_rejects" in out
    assert 'CREATE TABLE IF NOT EXISTS "public"."balances" (' in out
    assert '"ts" timestamptz NOT NULL' in out and '"note" text,' in out
    assert 'PRIMARY KEY ("account")' in out
    ledger = out[out.index('"ledger"'):]
    assert "PRIMARY KEY" not in ledger  # insert mode: no key


def test_sink_init_apply_without_the_dsn_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PG_DSN", raising=False)
    path = write(tmp_path)
    code = main(["sink", "init", str(path), "--apply", "--schemas", str(tmp_path / "schemas")])
    err = capsys.readouterr().err
    assert code != 0
    assert err.strip().count("\n") == 0 and "PG_DSN" in err and "Traceback" not in err
