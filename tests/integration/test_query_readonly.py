"""A read-only query is one read on the real engine: nothing written, nothing read outside the store,
no setting changed; what is refused is refused before it runs, and ordinary reads still pass."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import StoreError
from pipeline.store import Store

REFUSED = {
    "into outfile truncate": ("SELECT 1 INTO OUTFILE '{out}' TRUNCATE", "INTO OUTFILE"),
    "into outfile append": ("SELECT 1 INTO OUTFILE '{out}' APPEND", "INTO OUTFILE"),
    "into outfile compressed": ("SELECT 1 INTO OUTFILE '{out}' COMPRESSION 'gzip'", "INTO OUTFILE"),
    "into outfile and stdout": ("SELECT 1 INTO OUTFILE '{out}' AND STDOUT", "INTO OUTFILE"),
    "into outfile after a comment": ("SELECT 1 /* ; */ iNtO -- x\n OuTfIlE '{out}'", "INTO OUTFILE"),
    "scalar file": ("SELECT file('/etc/passwd')", "file()"),
    "scalar file mixed case": ("sElEcT FiLe('/etc/passwd')", "FiLe()"),
    "scalar file quoted name": ("SELECT `file`('/etc/passwd')", "file()"),
    "file in a subquery": ("SELECT * FROM (SELECT file('/etc/passwd') AS f)", "file()"),
    "file in a CTE": ("WITH x AS (SELECT file('/etc/passwd')) SELECT * FROM x", "file()"),
    "file after IN": ("SELECT 1 WHERE 'x' IN file('/etc/passwd', 'LineAsString')", "file()"),
    "table function file": ("SELECT * FROM file('/etc/passwd', 'LineAsString')", "file()"),
    "table function url": ("SELECT * FROM url('http://127.0.0.1:9/', CSV, 'a String')", "url()"),
    "url in a join": ("SELECT 1 FROM numbers(1) JOIN url('http://127.0.0.1:9/', CSV, 'a String') AS u ON 1",
                      "url()"),
    "s3 in a subquery": ("SELECT 1 WHERE 1 IN (SELECT * FROM s3('http://127.0.0.1:9/b/k', CSV, 'a UInt8'))",
                         "s3()"),
    "remote": ("SELECT * FROM remote('127.0.0.1:9', system.one)", "remote()"),
    "remoteSecure": ("SELECT * FROM remoteSecure('127.0.0.1:9', system.one)", "remoteSecure()"),
    "cluster": ("SELECT * FROM cluster('default', system.one)", "cluster()"),
    "mysql": ("SELECT * FROM mysql('127.0.0.1:9', 'd', 't', 'u', 'p')", "mysql()"),
    "postgresql": ("SELECT * FROM postgresql('127.0.0.1:9', 'd', 't', 'u', 'p')", "postgresql()"),
    "hdfs": ("SELECT * FROM hdfs('hdfs://127.0.0.1:9/x', CSV, 'a UInt8')", "hdfs()"),
    "executable": ("SELECT * FROM executable('x.sh', CSV, 'a UInt8')", "executable()"),
    "input": ("SELECT * FROM input('a UInt8')", "input()"),
    "iceberg": ("SELECT * FROM icebergLocal('/tmp/x')", "icebergLocal()"),
    "sqlite": ("SELECT * FROM sqlite('/tmp/x.db', 't')", "sqlite()"),
    "file in a lambda": ("SELECT arrayMap(x -> file(x), ['/etc/passwd'])", "file()"),
    "file in a union": ("SELECT 1 UNION ALL SELECT length(file('/etc/passwd'))", "file()"),
    "file inside view()": ("SELECT * FROM view(SELECT file('/etc/passwd'))", "file()"),
    "file in a comma join": ("SELECT * FROM numbers(2) AS n, fIlE('/etc/passwd', 'LineAsString') AS f", "fIlE()"),
    "explain": ("EXPLAIN SELECT 1", "Explain is not a read"),
    "describe a file": ("DESCRIBE TABLE file('/etc/passwd', 'LineAsString')", "file()"),
    "settings lift readonly": ("SELECT 1 SETTINGS readonly = 0", "SETTINGS"),
    "settings mixed case": ("SELECT 1 sEtTiNgS allow_ddl = 1", "SETTINGS"),
    "set": ("SET readonly = 0", "Set is not a read"),
    "two statements": ("SELECT 1; SELECT 2", "several statements"),
    "read then write": ("SELECT 1; INSERT INTO events (kind) VALUES ('x')", "several statements"),
    "insert": ("INSERT INTO events (kind) VALUES ('x')", "Insert is not a read"),
    "insert into function file": ("INSERT INTO FUNCTION file('{out}', 'CSV') SELECT 1", "Insert is not a read"),
    "alter": ("ALTER TABLE events DELETE WHERE 1", "is not a read"),
    "drop": ("DROP TABLE events", "is not a read"),
    "kill query": ("KILL QUERY WHERE 1", "KillQuery is not a read"),
    "optimize": ("OPTIMIZE TABLE events", "Optimize is not a read"),
    "use": ("USE system", "Use is not a read"),
}

READS = {
    "string literals that look like the refused": ("SELECT 'file(' AS a, 'INTO OUTFILE x' AS b, ';' AS c",
                                                   [("file(", "INTO OUTFILE x", ";")]),
    "a literal with a line break": ("SELECT 'x\nFunction file' AS a", [("x\nFunction file",)]),
    "comments": ("SELECT /* file('/etc/passwd') ; SETTINGS readonly=0 */ 1 AS a -- INTO OUTFILE 'x'",
                 [(1,)]),
    "a trailing semicolon": ("SELECT 1 AS a;", [(1,)]),
    "numbers and a subquery": ("SELECT sum(number) AS s FROM (SELECT number FROM numbers(4))", [(6,)]),
    "a store table": ("SELECT count() AS n FROM events", [(0,)]),
    "a column named file": ("SELECT 1 AS file", [(1,)]),
    "values and merge": ("SELECT count() AS n FROM VALUES('a UInt8', 1, 2) WHERE a IN (SELECT count() FROM "
                         "merge(currentDatabase(), '^events$'))", [(0,)]),
    "limit": ("SELECT number FROM numbers(5) ORDER BY number LIMIT 2", [(0,), (1,)]),
}


@pytest.mark.parametrize("sql, reason", list(REFUSED.values()), ids=list(REFUSED))
def test_what_is_not_a_single_read_is_refused_before_it_runs(store: Store, tmp_path: Path, sql: str,
                                                             reason: str) -> None:
    out = tmp_path / "out.csv"
    with pytest.raises(StoreError) as refused:
        store.query_readonly(sql.format(out=out))
    assert reason in str(refused.value)
    assert not refused.value.retriable
    assert not out.exists()
    assert store.query_readonly("SELECT count() FROM events").rows == [(0,)]


@pytest.mark.parametrize("sql, rows", list(READS.values()), ids=list(READS))
def test_reads_still_pass(store: Store, sql: str, rows: list[tuple[object, ...]]) -> None:
    assert store.query_readonly(sql).rows == rows


def test_show_describe_and_exists_are_reads(store: Store) -> None:
    assert ("events",) in store.query_readonly("SHOW TABLES").rows
    assert store.query_readonly("DESCRIBE TABLE events").rows
    assert store.query_readonly("EXISTS TABLE events").rows == [(1,)]
    assert "CREATE TABLE" in store.query_readonly("SHOW CREATE TABLE events").rows[0][0]


def test_bound_parameters_still_bind(store: Store) -> None:
    result = store.query_readonly("SELECT {text:String} AS text", parameters={"text": "file('/etc/passwd')"})
    assert result.rows == [("file('/etc/passwd')",)]


def test_every_type_the_engine_returns_renders_as_json(store: Store) -> None:
    import json

    from fabricscope.results import to_json, to_table

    assert json.loads(to_json(store.query_readonly("SELECT * FROM system.tables")))  # UUIDs, arrays, times
    result = store.query_readonly(
        "SELECT toUUID('00000000-0000-0000-0000-000000000001') AS uuid, toIPv4('10.0.0.1') AS v4, "
        "toIPv6('::ffff:10.1.2.3') AS mapped, toDecimal64(1.25, 4) AS dec, "
        "toDateTime('2026-01-15 11:00:00', 'Europe/Paris') AS paris, toDateTime64('2026-01-15 11:00:00.25', 3) AS t64, "
        "toDate('2026-01-15') AS day, toFixedString('ab', 3) AS raw, [[1.5, nan]] AS floats, "
        "map('k', toIPv4('1.2.3.4')) AS m, tuple(1, 'a', inf) AS t, CAST((1, 'x') AS Tuple(a UInt8, b String)) AS nt, "
        "toInt128(-5) AS big, true AS yes, CAST(NULL AS Nullable(UUID)) AS nothing"
    )
    assert json.loads(to_json(result)) == [{
        "uuid": "00000000-0000-0000-0000-000000000001", "v4": "10.0.0.1", "mapped": "10.1.2.3", "dec": "1.2500",
        "paris": "2026-01-15T10:00:00Z", "t64": "2026-01-15T11:00:00.250000Z", "day": "2026-01-15",
        "raw": "ab\x00", "floats": [[1.5, None]], "m": {"k": "1.2.3.4"}, "t": [1, "a", None],
        "nt": {"a": 1, "b": "x"}, "big": -5, "yes": True, "nothing": None,
    }]
    assert "2026-01-15T10:00:00.000Z" in to_table(result)


def test_a_syntax_error_names_the_users_text_not_the_parse_around_it(store: Store) -> None:
    with pytest.raises(StoreError) as wrong:
        store.query_readonly("SELEC 1")
    assert "Syntax error" in str(wrong.value) and "formatQuery" not in str(wrong.value)
    assert not wrong.value.retriable
