"""The compiled scanner of export lines (``export.scanner``): the same ``Item`` structs as
pyarrow's JSON parser, or a refusal with its reason (that block then goes to pyarrow)."""

from __future__ import annotations

import gzip
import io
import logging

import numpy as np
import pyarrow as pa
import pyarrow.json as pj
import pytest

from storepulse.export import columnar, scanner
from storepulse.export.sources import CompletedExport
from tests.jit import compile_scanner


@pytest.fixture(autouse=True, scope="module")
def _scanner_compiled() -> None:
    compile_scanner()


SCHEMA = columnar.parse_schema()  # every attribute the facts' data sets read, the order lines'
LAYOUT = scanner.layout_of(SCHEMA)


def parsed(lines: bytes) -> pa.StructArray:
    options = pj.ParseOptions(explicit_schema=SCHEMA, unexpected_field_behavior="ignore")
    return pj.read_json(io.BytesIO(lines), parse_options=options).column(0).combine_chunks()


def scanned(lines: bytes) -> pa.StructArray | scanner.Refused:
    assert LAYOUT is not None
    return scanner.scan(np.frombuffer(lines, dtype=np.uint8), LAYOUT)


ORDER = (
    b'{"Item":{"pk":{"S":"ORDER#o-1"},"type":{"S":"order"},"total":{"N":"-12.50"},'
    b'"units":{"N":"1E+3"},"lines":{"L":[{"M":{"sku":{"S":"a"},"quantity":{"N":"0.001"},'
    b'"unit_price":{"N":"-0"}}}]},"customer_id":{"NULL":true}}}\n'
)
ACCEPTED = {
    "compact": ORDER * 3,
    "no newline at the end": ORDER + ORDER[:-1],
    "unicode kept as UTF-8": '{"Item":{"store_id":{"S":"ñandú 東京 🛒"}}}\n'.encode(),
    "empty list, empty map, empty item": (
        b'{"Item":{"lines":{"L":[]}}}\n{"Item":{"lines":{"L":[{"M":{}}]}}}\n{"Item":{}}\n'
    ),
    "NULL list, missing attributes": b'{"Item":{"lines":{"NULL":true},"pk":{"S":""}}}\n',
    "spaces and tabs": b'{ "Item" :\t{ "pk" : { "S" : "x" } , "lines" : { "L" : [ ] } } }\n',
    # Numbers stay the strings DynamoDB wrote: Arrow's cast reads them as before.
    "numbers as written": b'{"Item":{"total":{"N":"1.5E-7"},"units":{"N":"0012"}}}\n',
    "attributes no data set reads, escapes in them": (
        b'{"Item":{"tags":{"SS":["a\\"b","\\u00e9"]},"n":{"NS":["1","2.5"]},"ok":{"BOOL":false},'
        b'"m":{"M":{"x":{"L":[{"N":"1"},{"NULL":true},[],{}]}}},"b":{"B":"AAE="},'
        b'"raw":[1,-2.5e+3,true,false,null,{"k":"v"}],"pk":{"S":"p"}}}\n'
    ),
    "order lines' other attributes skipped": (
        b'{"Item":{"lines":{"L":[{"M":{"x":{"M":{"sku":{"S":"no"}}},"sku":{"S":"yes"}}}]}}}\n'
    ),
}


@pytest.mark.parametrize("lines", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_the_scanner_makes_what_pyarrow_makes(lines: bytes) -> None:
    items = scanned(lines)
    assert not isinstance(items, scanner.Refused), items
    items.validate(full=True)
    assert items.type == parsed(lines).type
    assert items.equals(parsed(lines))


REFUSED = {
    b'{"Item":{"pk":{"S":"a\\"b"}}}\n': "a backslash escape",
    b'{"Item":{"pk":{"S":"\\u00e9"}}}\n': "a backslash escape",
    b'{"Item":{"p\\u006b":{"S":"x"}}}\n': "a backslash escape",
    b'{"Item":{"pk":{"N":"1"}}}\n': "an unexpected type tag",
    b'{"Item":{"total":{"N":12.5}}}\n': "an unexpected type tag",
    b'{"Item":{"pk":{"S":"x","N":"1"}}}\n': "an unexpected type tag",
    b'{"Item":{"lines":{"L":[{"S":"x"}]}}}\n': "an unexpected type tag",
    b'{"Item":{"pk":{"NULL":false}}}\n': "an unexpected type tag",
    b'{"Item":{"pk":{"S":"1"},"pk":{"S":"2"}}}\n': "an attribute given twice",
    b'\n{"Item":{}}\n': 'a line that is not {"Item": {...}}',  # a blank line
    b'{"Keys":{"pk":{"S":"x"}}}\n': 'a line that is not {"Item": {...}}',
    b'{"Item":{},"Metadata":{}}\n': 'a line that is not {"Item": {...}}',
    b'{"Item":{"pk":{"S":"x"}}}\r\n': "malformed JSON",
    b'{"Item":{"x":[1,]}}\n': "malformed JSON",
    b'{"Item":{"x":{"N":01}}}\n': "malformed JSON",
    b'{"Item":{"x":tru}}\n': "malformed JSON",
    b'{"Item":{"pk":{"S":"a\tb"}}}\n': "malformed JSON",
    b'{"Item":{"x":' + b"[" * 70 + b"]" * 70 + b"}}\n": "nesting deeper",
    b'{"Item":{"pk":{"S":"\xff"}}}\n': "invalid UTF-8",
}


@pytest.mark.parametrize(("lines", "reason"), REFUSED.items())
def test_what_the_scanner_does_not_handle_exactly_it_refuses(lines: bytes, reason: str) -> None:
    refused = scanned(ORDER + lines)
    assert isinstance(refused, scanner.Refused)
    assert refused.reason.startswith(reason)
    assert refused.line == (0 if reason == "invalid UTF-8" else 2)


def test_a_refused_block_is_parsed_by_pyarrow_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    """The same arrays either way; a line pyarrow refuses too fails as it did before."""
    caplog.set_level(logging.INFO, logger=columnar.__name__)
    data = gzip.compress(ORDER + b'{"Item":{"pk":{"S":"a\\"b"}}}\n')
    (items,) = columnar.batches_of_file(io.BytesIO(data), SCHEMA)
    assert items.equals(parsed(gzip.decompress(data)))
    assert "line 2 of the block): a backslash escape" in caplog.text
    broken = gzip.compress(ORDER + b'{"Item":{"pk":{"S":"1"},"pk":{"S":"2"}}}\n')
    with pytest.raises(pa.ArrowInvalid, match="specified twice"):
        list(columnar.batches_of_file(io.BytesIO(broken), SCHEMA))


def test_blocks_are_whole_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(columnar, "BLOCK_BYTES", 100)  # lines straddle every read
    data = gzip.compress(ORDER * 7)
    batches = list(columnar.batches_of_file(io.BytesIO(data), SCHEMA))
    assert len(batches) > 1
    assert pa.concat_arrays(batches).equals(parsed(ORDER * 7))


def test_the_scanner_reads_large_exports_only(caplog: pytest.LogCaptureFixture) -> None:
    """Its warm-up (numba, the cached JIT) costs seconds of CPU per process: small exports
    keep pyarrow's parser, and the choice is logged with its reason."""
    caplog.set_level(logging.INFO, logger=columnar.__name__)

    def export(count: int | None) -> CompletedExport:
        return CompletedExport("arn:e", "b", "p", "FULL_EXPORT", count, (), False)

    assert columnar.scans(export(columnar.SCANNER_MIN_ITEMS))
    assert not columnar.scans(export(columnar.SCANNER_MIN_ITEMS - 1))
    assert not columnar.scans(export(None))
    assert f"of {columnar.SCANNER_MIN_ITEMS:,} items read by the compiled scanner" in caplog.text
    assert "of ? items read by pyarrow's JSON parser" in caplog.text


def test_schemas_the_scanner_does_not_follow_keep_pyarrow() -> None:
    two_lists = columnar.item_type({"a": columnar._LINES, "b": columnar._LINES})
    assert scanner.layout_of(two_lists) is None
    assert scanner.layout_of(columnar.item_type({"a": pa.struct([("BOOL", pa.bool_())])})) is None
    assert scanner.layout_of(pa.schema([("Keys", pa.struct([]))])) is None
