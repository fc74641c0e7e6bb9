"""A compiled scanner of a native export's lines: the ``Item`` structs pyarrow's JSON reader
would make with ``columnar``'s schema, from one walk over the inflated bytes.

The scanner (numba, ``cache=True``) records per item and kept attribute whether it is there
(missing, a value, ``{"NULL": true}``) and the offsets of its value's bytes, and per order the
elements of its ``L`` of ``M``; Arrow arrays are then built from those offsets (strings gathered
once, numbers kept as strings for the cast ``columnar`` already does). What it does not handle
exactly is never guessed: a backslash escape in a kept value or a name, a type tag other than
the schema's or ``NULL``, an attribute twice, a blank line, a top-level key other than ``Item``,
whitespace other than spaces and tabs, nesting deeper than ``_DEPTH``, malformed JSON or UTF-8.
``scan`` then returns the reason, and ``columnar`` parses that block with pyarrow as before
(same arrays, same errors).

The JIT is cached on disk: in the package's ``__pycache__`` when writable, else numba's user
cache (``~/.cache/numba``), or ``NUMBA_CACHE_DIR`` when set; with none writable it compiles in
every process (``_cached`` logs it). The first compile costs 15-23 s of CPU on the 2-core
machine (2026-12-07, load 5-12), once per machine; every process then pays ~3.2 s to import
numba and load the cached code (``warm_up``), which ``columnar.SCANNER_MIN_ITEMS`` weighs.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numba
import numpy as np
import pyarrow as pa

__all__ = ["Layout", "Refused", "layout_of", "scan", "warm_up"]

log = logging.getLogger(__name__)

_DEPTH = 64  # nesting of a skipped value (DynamoDB allows 32 levels of M and L)

# The scanner's status codes: 0 done; the others are why it refused the block.
_OK, _MORE_ELEMENTS = 0, 1
_REASONS = {
    2: "malformed JSON",
    3: "a backslash escape in a kept value or an attribute name",
    4: "an unexpected type tag",
    5: "an attribute given twice",
    6: 'a line that is not {"Item": {...}}',
    7: "nesting deeper than the scanner follows",
}
_MALFORMED, _ESCAPE, _TAG, _TWICE, _LINE, _DEEP = 2, 3, 4, 5, 6, 7

# the tags of kept attributes: a string's type tag, or 0 for the list of maps
S, N, LIST = ord("S"), ord("N"), 0
_QUOTE, _BACKSLASH, _COLON, _COMMA = 34, 92, 58, 44
_OPEN, _CLOSE, _OPEN_LIST, _CLOSE_LIST, _NEWLINE = 123, 125, 91, 93, 10
_PLAIN = np.ones(256, dtype=np.bool_)  # a string's bytes that need no look
_PLAIN[[*range(32), _QUOTE, _BACKSLASH]] = False
_ESCAPED = np.zeros(256, dtype=np.bool_)  # what may follow a backslash, \u aside
_ESCAPED[list(b'"\\/bfnrt')] = True
_HEX = np.zeros(256, dtype=np.bool_)
_HEX[list(b"0123456789abcdefABCDEF")] = True
_TRUE, _FALSE, _NULL, _ITEM, _NULL_TAG = (
    np.frombuffer(w, dtype=np.uint8).copy() for w in (b"true", b"false", b"null", b"Item", b"NULL")
)


@dataclass(frozen=True)
class Refused:
    """Why the scanner left a block to pyarrow, and the line (1-based, within the block)."""

    reason: str
    line: int


@dataclass(frozen=True)
class Layout:
    """What the scanner keeps of a schema: attribute names and tags, and the names of the
    one list attribute's ``M`` elements (all ``S`` or ``N``)."""

    item_type: pa.StructType
    names: np.ndarray  # the names' bytes laid end to end
    name_starts: np.ndarray  # name a is names[name_starts[a]:name_starts[a + 1]]
    tags: np.ndarray
    sub_names: np.ndarray
    sub_name_starts: np.ndarray
    sub_tags: np.ndarray


_TYPE_OF = {S: pa.struct([("S", pa.string())]), N: pa.struct([("N", pa.string())])}
_TYPED = {type_: tag for tag, type_ in _TYPE_OF.items()}


def _names(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
    encoded = [n.encode() for n in names]
    starts = np.cumsum([0, *map(len, encoded)]).astype(np.int64)
    return np.frombuffer(b"".join(encoded) or b"\0", dtype=np.uint8).copy(), starts


def _element_fields(type_: pa.DataType) -> list[pa.Field] | None:
    """The ``M`` fields of ``struct<L: list<struct<M: struct<...>>>>``, or None."""
    if not (pa.types.is_struct(type_) and type_.num_fields == 1 and type_[0].name == "L"):
        return None
    listed = type_[0].type
    if not pa.types.is_list(listed):
        return None
    element = listed.value_type
    if not (pa.types.is_struct(element) and element.num_fields == 1 and element[0].name == "M"):
        return None
    fields = list(element[0].type)
    return fields if all(f.type in _TYPED for f in fields) else None


def layout_of(schema: pa.Schema) -> Layout | None:
    """The scanner's layout of ``columnar.item_type(...)``, or None when it cannot follow it."""
    if len(schema) != 1 or schema[0].name != "Item" or not pa.types.is_struct(schema[0].type):
        return None
    item_type: pa.StructType = schema[0].type
    tags, sub_fields = [], None
    for field in item_type:
        if field.type in _TYPED:
            tags.append(_TYPED[field.type])
        elif sub_fields is None and (sub_fields := _element_fields(field.type)) is not None:
            tags.append(LIST)
        else:
            return None  # a second list, or a type the scanner does not know
    sub_fields = sub_fields or []
    names, starts = _names([f.name for f in item_type])
    sub_names, sub_starts = _names([f.name for f in sub_fields])
    sub_tags = np.array([_TYPED[f.type] for f in sub_fields], dtype=np.uint8)
    return Layout(
        item_type, names, starts, np.array(tags, dtype=np.uint8), sub_names, sub_starts, sub_tags
    )


# --- the compiled scanner ------------------------------------------------------------------------
# Helpers take scalars and the buffer, and return positions (negative: a status), so the hot
# path passes no arrays around; only the entry points are cached (a cached function holds the
# code of the helpers it calls). No call passes a constant: numba would compile it twice.

_jit = numba.njit(nogil=True, boundscheck=False)


def _cached(function: Callable[..., Any]) -> Callable[..., Any]:
    """``_jit`` with numba's on-disk cache; without it (compiled in every process) where numba
    finds no writable cache directory (a read-only package and home): logged."""
    try:
        return numba.njit(cache=True, nogil=True, boundscheck=False)(function)
    except RuntimeError as exc:  # numba: "cannot cache function ...: no locator available"
        log.warning("%s: compiled in every process; set NUMBA_CACHE_DIR to cache it", exc)
        return _jit(function)


@_jit
def _ws(buf: np.ndarray, i: int, n: int) -> int:
    # Spaces and tabs only: a newline ends the line, a carriage return is left to pyarrow.
    while i < n and (buf[i] == 32 or buf[i] == 9):
        i += 1
    return i


@_jit
def _string_end(buf: np.ndarray, i: int, n: int) -> int:
    """The closing quote of the string opening at ``i``: -_ESCAPE on a backslash (its value
    would need unescaping), -_MALFORMED on a control character or the end."""
    i += 1
    while i < n and _PLAIN[buf[i]]:
        i += 1
    if i < n and buf[i] == _QUOTE:
        return i
    return -_ESCAPE if i < n and buf[i] == _BACKSLASH else -_MALFORMED


@_jit
def _skip_string(buf: np.ndarray, i: int, n: int) -> int:
    """Past the string opening at ``i``, escapes checked; -_MALFORMED when it is not JSON."""
    i += 1
    while i < n:
        c = buf[i]
        if _PLAIN[c]:
            i += 1
        elif c == _QUOTE:
            return i + 1
        elif c != _BACKSLASH or i + 1 >= n:
            return -_MALFORMED  # a control character, or the end
        elif buf[i + 1] == 117:  # \uXXXX
            if i + 5 >= n:
                return -_MALFORMED
            for j in range(i + 2, i + 6):
                if not _HEX[buf[j]]:
                    return -_MALFORMED
            i += 6
        elif _ESCAPED[buf[i + 1]]:
            i += 2
        else:
            return -_MALFORMED
    return -_MALFORMED


@_jit
def _digits(buf: np.ndarray, i: int, n: int) -> int:
    start = i
    while i < n and 48 <= buf[i] <= 57:
        i += 1
    return i if i > start else -_MALFORMED


@_jit
def _skip_number(buf: np.ndarray, i: int, n: int) -> int:
    """Past a JSON number: -? (0 | [1-9][0-9]*) (.[0-9]+)? ([eE][+-]?[0-9]+)?"""
    if buf[i] == 45:
        i += 1
    if i < n and buf[i] == 48:
        i += 1
    else:
        i = _digits(buf, i, n)
        if i < 0:
            return i
    if i < n and buf[i] == 46:
        i = _digits(buf, i + 1, n)
        if i < 0:
            return i
    if i < n and (buf[i] == 101 or buf[i] == 69):
        i += 1
        if i < n and (buf[i] == 43 or buf[i] == 45):
            i += 1
        i = _digits(buf, i, n)
    return i


@_jit
def _match(buf: np.ndarray, i: int, n: int, word: np.ndarray) -> int:
    """Past ``word`` at ``i``, or -_MALFORMED."""
    if i + len(word) > n:
        return -_MALFORMED
    for j in range(len(word)):
        if buf[i + j] != word[j]:
            return -_MALFORMED
    return i + len(word)


@_jit
def _skip_scalar(buf: np.ndarray, i: int, n: int) -> int:
    c = buf[i]
    if c == _QUOTE:
        return _skip_string(buf, i, n)
    if c == 45 or 48 <= c <= 57:
        return _skip_number(buf, i, n)
    if c == 116:
        return _match(buf, i, n, _TRUE)
    if c == 102:
        return _match(buf, i, n, _FALSE)
    return _match(buf, i, n, _NULL) if c == 110 else -_MALFORMED


@_jit
def _member_value(buf: np.ndarray, i: int, n: int) -> int:
    """From a member's name (``i`` at its quote) past its colon and spaces."""
    i = _skip_string(buf, i, n)
    if i < 0:
        return i
    i = _ws(buf, i, n)
    if i >= n or buf[i] != _COLON:
        return -_MALFORMED
    return _ws(buf, i + 1, n)


@_jit
def _skip_value(buf: np.ndarray, i: int, n: int, stack: np.ndarray) -> int:
    """Past any JSON value starting at ``i`` (objects and arrays followed with ``stack``),
    checked as a JSON parser would; a negative status when it is not JSON."""
    depth = 0
    while True:
        if i >= n:
            return -_MALFORMED
        c = buf[i]
        if c == _OPEN or c == _OPEN_LIST:  # noqa: SIM109 (numba: plain compares)
            close = _CLOSE if c == _OPEN else _CLOSE_LIST
            i = _ws(buf, i + 1, n)
            if i < n and buf[i] == close:
                i += 1
            else:
                if depth == _DEPTH:
                    return -_DEEP
                stack[depth] = c
                depth += 1
                if c == _OPEN:
                    if i >= n or buf[i] != _QUOTE:
                        return -_MALFORMED
                    i = _member_value(buf, i, n)
                    if i < 0:
                        return i
                continue
        else:
            i = _skip_scalar(buf, i, n)
            if i < 0:
                return i
        while True:  # a value done: the next of its container, or the container's end
            if depth == 0:
                return i
            i = _ws(buf, i, n)
            if i >= n:
                return -_MALFORMED
            c, top = buf[i], stack[depth - 1]
            if c == _COMMA:
                i = _ws(buf, i + 1, n)
                if top == _OPEN:
                    if i >= n or buf[i] != _QUOTE:
                        return -_MALFORMED
                    i = _member_value(buf, i, n)
                    if i < 0:
                        return i
                break
            if (c == _CLOSE and top == _OPEN) or (c == _CLOSE_LIST and top == _OPEN_LIST):
                depth -= 1
                i += 1
                continue
            return -_MALFORMED


@_jit
def _skip_attribute(buf: np.ndarray, i: int, n: int, stack: np.ndarray) -> int:
    """Past an attribute no data set reads: ``{"S":"..."}`` and ``{"N":"..."}`` directly,
    anything else as any JSON value."""
    if (
        i + 6 < n
        and buf[i] == _OPEN
        and buf[i + 1] == _QUOTE
        and (buf[i + 2] == 83 or buf[i + 2] == 78)
        and buf[i + 3] == _QUOTE
        and buf[i + 4] == _COLON
        and buf[i + 5] == _QUOTE
    ):
        j = _skip_string(buf, i + 5, n)
        if j > 0 and j < n and buf[j] == _CLOSE:
            return j + 1
    return _skip_value(buf, i, n, stack)


@_jit
def _name(buf, start: int, end: int, names, starts, guess: int) -> int:
    """The index of the name ``buf[start:end]`` among ``names``, -1 if none; ``guess`` first
    (an export writes every item's attributes in the same order)."""
    count = len(starts) - 1
    length = end - start
    for t in range(count):
        a = guess + t
        if a >= count:
            a -= count
        s = starts[a]
        if starts[a + 1] - s != length:
            continue
        j = 0
        while j < length and buf[start + j] == names[s + j]:
            j += 1
        if j == length:
            return a
    return -1


@_jit
def _key(buf: np.ndarray, i: int, n: int) -> tuple[int, int, int]:
    """A member's name (``i`` at its quote): (start, end, index past the colon and spaces);
    a negative start is the status."""
    if i >= n or buf[i] != _QUOTE:
        return -_MALFORMED, 0, 0
    end = _string_end(buf, i, n)
    if end < 0:
        return end, 0, 0
    j = end + 1
    if j < n and buf[j] == _COLON:
        return i + 1, end, _ws(buf, j + 1, n)
    j = _ws(buf, j, n)
    if j >= n or buf[j] != _COLON:
        return -_MALFORMED, 0, 0
    return i + 1, end, _ws(buf, j + 1, n)


@_jit
def _end_of_typed(buf: np.ndarray, i: int, n: int) -> int:
    """Past the typed value's closing brace: anything else (a second tag) is refused."""
    if i < 0:
        return i
    i = _ws(buf, i, n)
    if i >= n or buf[i] != _CLOSE:
        return -_TAG
    return i + 1


@_jit
def _typed(buf: np.ndarray, i: int, n: int, tag: int) -> tuple[int, int, int]:
    """The typed value at ``i``, ``{"<tag>": "..."}`` or ``{"NULL": true}``: (past it, start
    and end of the string; start -1 for NULL), or (a negative status, 0, 0)."""
    if (
        i + 5 < n
        and buf[i] == _OPEN
        and buf[i + 1] == _QUOTE
        and buf[i + 2] == tag
        and buf[i + 3] == _QUOTE
        and buf[i + 4] == _COLON
    ):
        j = _ws(buf, i + 5, n)  # the usual ``{"S":``, compact or not
    else:
        if i >= n or buf[i] != _OPEN:
            return -_TAG, 0, 0
        start, end, j = _key(buf, _ws(buf, i + 1, n), n)
        if start < 0:
            return start, 0, 0
        if _match(buf, start, end, _NULL_TAG) == end:
            j = _match(buf, j, n, _TRUE)
            return (_end_of_typed(buf, j, n), -1, 0) if j >= 0 else (-_TAG, 0, 0)
        if end - start != 1 or buf[start] != tag:
            return -_TAG, 0, 0
    if j >= n or buf[j] != _QUOTE:
        return -_TAG, 0, 0  # a JSON number or other value where DynamoDB writes a string
    close = _string_end(buf, j, n)
    if close < 0:
        return close, 0, 0
    if close + 1 < n and buf[close + 1] == _CLOSE:
        return close + 2, j + 1, close
    return _end_of_typed(buf, close + 1, n), j + 1, close


@_jit
def _after_member(buf: np.ndarray, i: int, n: int) -> tuple[int, bool]:
    """After a member's value: (the next member's quote, False) or (past the brace, True)."""
    if i < 0:
        return i, True
    if i < n and buf[i] == _COMMA and i + 1 < n and buf[i + 1] == _QUOTE:
        return i + 1, False
    i = _ws(buf, i, n)
    if i < n and buf[i] == _COMMA:
        return _ws(buf, i + 1, n), False
    if i < n and buf[i] == _CLOSE:
        return i + 1, True
    return -_MALFORMED, True


@_jit
def _first_member(buf: np.ndarray, i: int, n: int) -> tuple[int, bool]:
    """At an object's brace: (its first member's quote, False) or (past ``{}``, True)."""
    i = _ws(buf, i + 1, n)
    if i < n and buf[i] == _CLOSE:
        return i + 1, True
    return i, False


@_jit
def _element(buf, i: int, n: int, names, name_starts, tags, state, starts, ends, e: int, stack):
    """One ``{"M": {...}}`` element at ``i`` into column ``e`` of the element arrays."""
    if not (i < n and buf[i] == _OPEN):
        return -_TAG
    start, end, i = _key(buf, _ws(buf, i + 1, n), n)
    if start < 0:
        return start
    if end - start != 1 or buf[start] != 77 or i >= n or buf[i] != _OPEN:  # "M"
        return -_TAG
    i, done = _first_member(buf, i, n)
    guess = np.int64(0)
    while not done:
        start, end, i = _key(buf, i, n)
        if start < 0:
            return start
        a = _name(buf, start, end, names, name_starts, guess)
        if a < 0:
            i = _skip_attribute(buf, i, n, stack)
        elif state[a, e] != 0:
            return -_TWICE
        else:
            i, starts[a, e], ends[a, e] = _typed(buf, i, n, tags[a])
            state[a, e] = 1 if starts[a, e] >= 0 else 2
            guess = a + 1
        i, done = _after_member(buf, i, n)
    return _end_of_typed(buf, i, n)


@_jit
def _list(buf, i: int, n: int, names, name_starts, tags, e_state, e_starts, e_ends, bounds, stack):
    """``{"L": [...]}`` at ``i`` (``{"NULL": true}`` is the caller's): past it, or a status.
    The elements go to the element arrays from ``bounds[0]`` (``bounds[1]``: the capacity)."""
    if not (i < n and buf[i] == _OPEN):
        return -_TAG
    start, end, i = _key(buf, _ws(buf, i + 1, n), n)
    if start < 0:
        return start
    if end - start != 1 or buf[start] != 76 or i >= n or buf[i] != _OPEN_LIST:  # "L"
        return -_TAG
    i = _ws(buf, i + 1, n)
    if i < n and buf[i] == _CLOSE_LIST:
        return _end_of_typed(buf, i + 1, n)
    while True:
        if bounds[0] == bounds[1]:
            return -_MORE_ELEMENTS
        e = bounds[0]
        i = _element(buf, i, n, names, name_starts, tags, e_state, e_starts, e_ends, e, stack)
        if i < 0:
            return i
        bounds[0] += 1
        i = _ws(buf, i, n)
        if i < n and buf[i] == _COMMA:
            i = _ws(buf, i + 1, n)
            continue
        if i < n and buf[i] == _CLOSE_LIST:
            return _end_of_typed(buf, i + 1, n)
        return -_MALFORMED


@_jit
def _count_lines(buf: np.ndarray) -> int:
    count = 0
    for c in buf:
        if c == _NEWLINE:
            count += 1
    return count + (1 if len(buf) and buf[-1] != _NEWLINE else 0)


@_jit
def _line_start(buf: np.ndarray, i: int, n: int) -> int:
    """At a line's start: past ``{"Item":``, at the item's brace; -_LINE when it is not so."""
    i = _ws(buf, i, n)
    if i >= n or buf[i] != _OPEN:
        return -_LINE  # a blank line too
    start, end, i = _key(buf, _ws(buf, i + 1, n), n)
    if start < 0 or _match(buf, start, end, _ITEM) != end or i >= n or buf[i] != _OPEN:
        return -_LINE
    return i


@_jit
def _line_end(buf: np.ndarray, i: int, n: int) -> int:
    """After the item: past ``}`` and the newline."""
    i = _ws(buf, i, n)
    if i >= n or buf[i] != _CLOSE:
        return -_LINE  # a second key beside "Item"
    i = _ws(buf, i + 1, n)
    if i < n and buf[i] != _NEWLINE:
        return -_MALFORMED
    return i + 1


@_cached
def _scan(buf, names, name_starts, tags, sub_names, sub_starts, sub_tags, capacity: int):
    """Every line of ``buf``: (status, items scanned, their arrays [attribute, item], list
    offsets, element count, the elements' arrays [element attribute, element])."""
    n, rows = len(buf), _count_lines(buf)
    state = np.zeros((len(tags), rows), dtype=np.int8)
    starts = np.empty((len(tags), rows), dtype=np.int64)
    ends = np.empty((len(tags), rows), dtype=np.int64)
    e_state = np.zeros((len(sub_tags), capacity), dtype=np.int8)
    e_starts = np.empty((len(sub_tags), capacity), dtype=np.int64)
    e_ends = np.empty((len(sub_tags), capacity), dtype=np.int64)
    bounds = np.array([0, capacity], dtype=np.int64)
    offsets = np.zeros(rows + 1, dtype=np.int64)  # an item's elements are contiguous
    stack = np.empty(_DEPTH, dtype=np.uint8)
    i, row, status = np.int64(0), np.int64(0), _OK  # not constants: see above
    while i < n and status == _OK:
        offsets[row] = bounds[0]
        i = _line_start(buf, i, n)
        done = i < 0
        i, done = (i, True) if done else _first_member(buf, i, n)
        guess = np.int64(0)
        while not done:
            start, end, i = _key(buf, i, n)
            if start < 0:
                i = start
                break
            a = _name(buf, start, end, names, name_starts, guess)
            if a < 0:
                i = _skip_attribute(buf, i, n, stack)
            elif state[a, row] != 0:
                i = -_TWICE
            elif tags[a] != 0:
                i, starts[a, row], ends[a, row] = _typed(buf, i, n, tags[a])
                state[a, row] = 1 if starts[a, row] >= 0 else 2
            else:  # a list (tag 0): {"NULL": true}, or {"L": [...]}
                j, _, _ = _typed(buf, i, n, tags[a])
                state[a, row] = 2 if j >= 0 else 1
                i = (
                    j
                    if j >= 0
                    else _list(
                        buf,
                        i,
                        n,
                        sub_names,
                        sub_starts,
                        sub_tags,
                        e_state,
                        e_starts,
                        e_ends,
                        bounds,
                        stack,
                    )
                )
            guess = a + 1
            i, done = _after_member(buf, i, n)
        i = _line_end(buf, i, n) if i >= 0 else i
        if i < 0:
            status = -i
        else:
            row += 1
    offsets[row] = bounds[0]
    return status, row, (state, starts, ends), offsets, bounds[0], (e_state, e_starts, e_ends)


@_cached
def _columns(buf, state, starts, ends, tags, count: int):
    """Every string attribute's Arrow buffers (``tags[a]`` not 0) for the first ``count``
    rows: offsets [attribute, row] into one data buffer (each attribute's strings laid end to
    end, empty where ``state`` is not 1), validity bitmaps of the strings (``state`` 1) and of
    their structs (``state`` not 0), and how many of each are valid."""
    attributes = state.shape[0]
    offsets = np.zeros((attributes, count + 1), dtype=np.int32)
    bitmaps = np.zeros((2, attributes, (count + 7) // 8), dtype=np.uint8)
    valid = np.zeros((2, attributes), dtype=np.int64)
    total = 0
    for a in range(attributes):
        offsets[a, 0] = total
        for r in range(count):
            if tags[a] != 0 and state[a, r] != 0:
                bitmaps[1, a, r >> 3] |= np.uint8(1 << (r & 7))
                valid[1, a] += 1
                if state[a, r] == 1:
                    bitmaps[0, a, r >> 3] |= np.uint8(1 << (r & 7))
                    valid[0, a] += 1
                    total += ends[a, r] - starts[a, r]
            offsets[a, r + 1] = total
    data = np.empty(total, dtype=np.uint8)
    for a in range(attributes):
        for r in range(count):
            o = offsets[a, r]
            s = starts[a, r]
            for j in range(offsets[a, r + 1] - o):
                data[o + j] = buf[s + j]
    return offsets, data, bitmaps, valid


# --- Arrow arrays from the scanner's offsets ----------------------------------------------------


def _bitmap(valid: np.ndarray) -> pa.Buffer | None:
    return None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))


def _typed_arrays(buf: np.ndarray, arrays: tuple, tags: np.ndarray, count: int) -> list:
    """Per attribute of a string tag, ``struct<S: string>`` (or ``N``): null where the
    attribute is missing, its string null where it is ``{"NULL": true}``; None for a list."""
    offsets, data, bitmaps, valid = _columns(buf, *arrays, tags, count)
    data = pa.py_buffer(data)

    def bitmap(kind: int, a: int) -> pa.Buffer | None:
        return None if valid[kind, a] == count else pa.py_buffer(bitmaps[kind, a])

    columns = []
    for a, tag in enumerate(tags):
        if tag == LIST:
            columns.append(None)
            continue
        buffers = [bitmap(0, a), pa.py_buffer(offsets[a]), data]
        strings = pa.Array.from_buffers(pa.string(), count, buffers)
        columns.append(
            pa.Array.from_buffers(_TYPE_OF[tag], count, [bitmap(1, a)], children=[strings])
        )
    return columns


def _list_array(type_: pa.DataType, buf, layout: Layout, state, offsets, e_count, e_arrays):
    """``struct<L: list<struct<M: struct<...>>>>`` from the list offsets and elements."""
    element_type = type_[0].type.value_type
    fields = _typed_arrays(buf, e_arrays, layout.sub_tags, e_count)
    m = pa.Array.from_buffers(element_type[0].type, e_count, [None], children=fields)
    elements = pa.Array.from_buffers(element_type, e_count, [None], children=[m])
    listed = pa.Array.from_buffers(
        type_[0].type,
        len(state),
        [_bitmap(state == 1), pa.py_buffer(offsets.astype(np.int32))],
        children=[elements],
    )
    return pa.Array.from_buffers(type_, len(state), [_bitmap(state != 0)], children=[listed])


def _utf8(buf: np.ndarray) -> bool:
    """Whether the block is valid UTF-8 (checked only when not all ASCII)."""
    if len(buf) == 0 or buf.max() < 0x80:
        return True
    try:
        buf.tobytes().decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _scanned(buf: np.ndarray, layout: Layout) -> tuple:
    if buf.flags.writeable:  # one compiled signature: read-only, as bytes read from a file are
        buf = buf.view()
        buf.flags.writeable = False
    capacity = len(buf) // 64 + 16  # elements: an order line takes ~150 bytes
    while True:
        result = _scan(
            buf,
            layout.names,
            layout.name_starts,
            layout.tags,
            layout.sub_names,
            layout.sub_name_starts,
            layout.sub_tags,
            capacity,
        )
        if result[0] != _MORE_ELEMENTS:
            return result
        capacity = len(buf) // 8 + 16  # ``{"M":{}}`` is 8 bytes


def scan(buf: np.ndarray, layout: Layout) -> pa.StructArray | Refused:
    """The ``Item`` structs of the export lines in ``buf`` (uint8, whole lines), equal to what
    pyarrow's JSON reader makes with ``layout``'s schema; or why the scanner refused them."""
    status, rows, arrays, offsets, e_count, e_arrays = _scanned(buf, layout)
    if status != _OK:
        return Refused(_REASONS[status], rows + 1)
    if not _utf8(buf):
        return Refused("invalid UTF-8", 0)
    fields = _typed_arrays(buf, arrays, layout.tags, rows)
    for a, field in enumerate(layout.item_type):
        if layout.tags[a] == LIST:
            state = arrays[0][a, :rows]
            fields[a] = _list_array(field.type, buf, layout, state, offsets, e_count, e_arrays)
    return pa.Array.from_buffers(layout.item_type, rows, [None], children=fields)


def warm_up() -> None:
    """Compile the scanner, or load it from numba's cache (its signatures do not depend on
    the schema), before anything is timed."""
    layout = layout_of(pa.schema([("Item", pa.struct([("a", pa.struct([("S", pa.string())]))]))]))
    assert layout is not None
    scan(np.frombuffer(b'{"Item":{"a":{"S":""}}}\n', dtype=np.uint8), layout)
