"""Record columns built from buffers equal what pa.array makes of them, and a replay never imports pandas."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline import arrow_columns, codec, records
from tests.pipeline_rows import random_flows

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def _reference(values: np.ndarray, field: pa.Field) -> pa.Array:
    if field.type == arrow_columns.IP_TYPE and values.ndim == 2:
        values = np.array([bytes(row) for row in values], dtype=object)
    return pa.array(values, type=field.type, from_pandas=field.nullable)


def _built(values: np.ndarray, field: pa.Field, numpy: str) -> pa.Array:
    return arrow_columns.column(values, field, None if numpy == "object" else np.dtype(numpy))


@pytest.mark.parametrize("table", sorted(records.TABLES))
def test_every_column_of_every_table_equals_pa_array(table: str) -> None:
    rng = np.random.default_rng(7)
    columns = records.empty_columns(table, 50)
    for column in records.TABLES[table]:
        values = columns[column.name]
        if column.numpy.startswith(("uint", "float")):
            columns[column.name] = rng.integers(0, 200, len(values)).astype(column.numpy)
        elif column.arrow == pa.string():
            columns[column.name] = np.array([f"leaf{i % 3}-spine{i % 2}" for i in range(len(values))], dtype=object)
    for column, field in zip(records.TABLES[table], records.arrow_schema(table), strict=True):
        values = np.asarray(columns[column.name])
        assert _built(values, field, column.numpy).equals(_reference(values, field)), column.name


def test_flow_batches_encode_as_before() -> None:
    """The flows of the pipeline tests, address columns as (n, 16) bytes, against pa.array column by column."""
    batch = random_flows(2000, seed=3)
    table = codec.to_arrow("flows", batch)
    for column, field in zip(records.FLOWS, records.arrow_schema("flows"), strict=True):
        assert table.column(column.name).combine_chunks().equals(_reference(np.asarray(batch[column.name]), field))


@pytest.mark.parametrize("text", [["é", "", "spine→leaf", "a"], ["", ""], []])
def test_strings_past_ascii_and_empty(text: list[str]) -> None:
    values = np.array(text, dtype=object)
    assert _built(values, pa.field("s", pa.string()), "object").equals(pa.array(text, type=pa.string()))


def test_lists_of_strings() -> None:
    values = np.empty(4, dtype=object)
    values[:] = [["leaf1-spine1", "leaf2-spine1"], [], ("leaf3-spine2",), ["ü"]]
    field = pa.field("links", pa.list_(pa.string()))
    expected = pa.array([list(item) for item in values], type=field.type)
    assert _built(values, field, "object").equals(expected)


def test_nan_is_null_where_the_field_is_nullable() -> None:
    values = np.array([1.5, np.nan, 3.0])
    nullable = _built(values, pa.field("v", pa.float64(), nullable=True), "float64")
    assert nullable.to_pylist() == [1.5, None, 3.0]
    plain = _built(values, pa.field("v", pa.float64(), nullable=False), "float64")
    assert plain.null_count == 0 and np.isnan(plain.to_pylist()[1])


def test_integers_are_converted_when_they_fit() -> None:
    field = pa.field("port", pa.uint16())
    assert _built(np.array([0, 65535], dtype=np.int64), field, "uint16").to_pylist() == [0, 65535]


@pytest.mark.parametrize("values", [np.array([70000], dtype=np.int64), np.array([-1], dtype=np.int64),
                                    np.array(["x"], dtype=object)])
def test_values_that_do_not_fit_fail_as_pa_array_does(values: np.ndarray) -> None:
    batch = records.empty_columns("flows", 1)
    batch["src_port"] = values
    with pytest.raises(ValueError, match=r"flows\.src_port"):
        codec.to_arrow("flows", batch)


def test_a_string_column_holding_a_number_fails_naming_it() -> None:
    batch = records.empty_columns("flows", 2)
    batch["app"] = np.array(["rocev2", 7], dtype=object)
    with pytest.raises(ValueError, match=r"flows\.app"):
        codec.to_arrow("flows", batch)


def test_numpy_values_reads_sliced_and_chunked_columns() -> None:
    data = pa.chunked_array([pa.array(range(10), type=pa.int64()).slice(3, 4), pa.array([20, 21], type=pa.int64())])
    assert arrow_columns.numpy_values(data, np.dtype(np.int64)).tolist() == [3, 4, 5, 6, 20, 21]


def test_a_replay_leaves_pandas_unimported(tmp_path: Path) -> None:
    """Importing pandas costs a short replay a tenth of a second: the collector's path (decode, records,
    their JSONL and Parquet files) must not."""
    script = (
        "import sys; from fabricscope.cli import main\n"
        f"for out in ({str(tmp_path / 'flows.jsonl')!r}, {str(tmp_path / 'flows.parquet')!r}):\n"
        f"    main(['replay', {str(SAMPLES / 'mixed.pcap')!r}, '--topology', {str(SAMPLES / 'mixed.topology.yaml')!r},"
        " '--out', out, '--workers', '1', '--no-progress'])\n"
        "print('pandas' in sys.modules)\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert run.stdout.split()[-1] == "False"
    assert (tmp_path / "flows.jsonl").stat().st_size > 0


def test_a_jsonl_replay_of_roce_imports_no_parquet_and_no_hpack(tmp_path: Path) -> None:
    """Parquet's writer and HTTP/2's header decoder are imported where a file is Parquet or a payload HTTP/2
    (~15 ms of every replay's start-up otherwise); the Parquet file is then written as before."""
    script = (
        "import sys; from fabricscope.cli import main\n"
        f"main(['replay', {str(SAMPLES / 'link_failure.pcap')!r}, '--topology',"
        f" {str(SAMPLES / 'link_failure.topology.yaml')!r}, '--out', {str(tmp_path / 'flows.jsonl')!r},"
        " '--workers', '1', '--no-progress'])\n"
        "print('pyarrow.parquet' in sys.modules, 'hpack' in sys.modules)\n"
        f"main(['replay', {str(SAMPLES / 'link_failure.pcap')!r}, '--topology',"
        f" {str(SAMPLES / 'link_failure.topology.yaml')!r}, '--out', {str(tmp_path / 'flows.parquet')!r},"
        " '--workers', '1', '--no-progress'])\n"
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert run.stdout.split()[-2:] == ["False", "False"]
    assert len(pq.read_table(tmp_path / "flows.parquet")) == len((tmp_path / "flows.jsonl").read_text().splitlines())
