"""Numpy record columns as Arrow arrays, built from buffers.

`pa.array` asks pandas whether its argument is a Series before anything else (`to_numpy` too), and that
first question imports pandas: a tenth of a second, the largest fixed cost of a short replay after numba,
paid by every collector process for nothing. So the columns records.py declares go in as buffers:
fixed-width values as they lie in memory, strings as one joined text and its offsets, addresses as 16-byte
values, lists of strings as offsets over their strings. What none of these takes (values of another type,
out of range) goes to `pa.array`, whose safe conversion and error messages stay the rule.
"""

from __future__ import annotations

import itertools

import numpy as np
import pyarrow as pa

IP_BYTES = 16
IP_TYPE = pa.binary(IP_BYTES)
_STRING_LISTS = pa.list_(pa.string())


def column(values: np.ndarray, field: pa.Field, dtype: np.dtype | None) -> pa.Array:
    """The column as an Arrow array of the field's type; `dtype` is the numpy type of a fixed-width field's
    buffer (records.Column.numpy), None for the others."""
    built: pa.Array | None = None
    if field.type == IP_TYPE:
        built = _addresses(values)
    elif dtype is not None:
        built = _fixed_width(values, dtype, field) if _fits(values, dtype) else None
    elif values.dtype == object and field.type == pa.string():
        built = _strings(values.tolist())
    elif values.dtype == object and field.type == _STRING_LISTS:
        built = _string_lists(values.tolist())
    if built is not None:
        return built
    return pa.array(values, type=field.type, from_pandas=field.nullable)


def strings(texts: list[str]) -> pa.Array:
    """Text as an Arrow string array, built from buffers."""
    built = _strings(texts)  # type: ignore[arg-type]  # list is invariant: every str is an object
    return built if built is not None else pa.array(texts, pa.string())


def indices(order: np.ndarray) -> pa.Array:
    """Row numbers for `Table.take`."""
    data = np.ascontiguousarray(order, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(data), [None, pa.py_buffer(data)])


def numpy_values(values: pa.Array | pa.ChunkedArray, dtype: np.dtype) -> np.ndarray:
    """A fixed-width column's values as numpy (`to_numpy` imports pandas too); nulls as to_numpy gives them."""
    chunks = values.chunks if isinstance(values, pa.ChunkedArray) else [values]
    if any(chunk.null_count for chunk in chunks):
        return values.to_numpy(zero_copy_only=False)
    parts = [np.frombuffer(chunk.buffers()[1], dtype=dtype)[chunk.offset : chunk.offset + len(chunk)]
             for chunk in chunks]
    return np.concatenate(parts) if len(parts) != 1 else parts[0]


def _fits(values: np.ndarray, dtype: np.dtype) -> bool:
    """Whether every value keeps its meaning as `dtype` (what pa.array's safe conversion allows of ours):
    the same type, a float as a float, an integer within an unsigned target's range."""
    if values.ndim != 1:
        return False
    if values.dtype == dtype:
        return True
    if dtype.kind == "f":
        return values.dtype.kind == "f"
    if dtype.kind != "u" or values.dtype.kind not in "iu":
        return False
    if np.can_cast(values.dtype, dtype) or not len(values):
        return True
    bounds = np.iinfo(dtype)
    return bool(values.min() >= bounds.min and values.max() <= bounds.max)


def _fixed_width(values: np.ndarray, dtype: np.dtype, field: pa.Field) -> pa.Array:
    """Values over a buffer of themselves; NaN is null where the field is nullable, as pa.array's
    from_pandas makes it."""
    data = np.ascontiguousarray(values, dtype=dtype)
    validity, nulls = None, 0
    if field.nullable and dtype.kind == "f":
        missing = np.isnan(data)
        nulls = int(missing.sum())
        if nulls:
            validity = pa.py_buffer(np.packbits(~missing, bitorder="little"))
    return pa.Array.from_buffers(field.type, len(data), [validity, pa.py_buffer(data)], null_count=nulls)


def _strings(items: list[object]) -> pa.Array | None:
    """str items as one UTF-8 text and the offsets between them; None when an item is not a str."""
    try:
        text = "".join(items)  # type: ignore[arg-type]
    except TypeError:
        return None
    data = text.encode()
    if len(data) == len(text):  # ASCII: a character is a byte
        lengths = np.fromiter(map(len, items), dtype=np.int64, count=len(items))  # type: ignore[arg-type]
    else:
        lengths = np.fromiter((len(str(item).encode()) for item in items), dtype=np.int64, count=len(items))
    offsets = _offsets(lengths)
    if offsets is None:
        return None
    return pa.Array.from_buffers(pa.string(), len(items), [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _string_lists(items: list[object]) -> pa.Array | None:
    """Lists (or tuples) of str as offsets over their strings; None when an item is not one."""
    if not all(type(item) in (list, tuple) for item in items):
        return None
    offsets = _offsets(np.fromiter(map(len, items), dtype=np.int64, count=len(items)))  # type: ignore[arg-type]
    strings = _strings(list(itertools.chain.from_iterable(items)))  # type: ignore[arg-type]
    if offsets is None or strings is None:
        return None
    return pa.ListArray.from_buffers(_STRING_LISTS, len(items), [None, pa.py_buffer(offsets)], children=[strings])


def _offsets(lengths: np.ndarray) -> np.ndarray | None:
    """Arrow's 32-bit offsets of items of these lengths; None past 2 GiB (pa.array chunks that)."""
    if lengths.sum() > np.iinfo(np.int32).max:
        return None
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return offsets


def _addresses(values: np.ndarray) -> pa.Array | None:
    """16-byte addresses from an (n, 16) uint8 array, V16 values or an object array of 16-byte bytes."""
    if values.dtype == np.dtype(f"V{IP_BYTES}"):
        values = np.ascontiguousarray(values).view(np.uint8).reshape(-1, IP_BYTES)
    if values.ndim == 2 and values.shape[1] == IP_BYTES and values.dtype == np.uint8:
        data: bytes | np.ndarray = np.ascontiguousarray(values)  # the buffer itself, not a copy
    elif values.ndim == 1 and values.dtype == object:
        items = values.tolist()
        if not all(type(item) is bytes and len(item) == IP_BYTES for item in items):
            return None
        data = b"".join(items)
    else:
        return None
    return pa.Array.from_buffers(IP_TYPE, len(values), [None, pa.py_buffer(data)])
