"""The audit's results in the lake: ``_quality/<dataset>/dt=<day>/result.json`` and
``index.html`` (a compact table rendered here: GE's Data Docs need a configured site), and a day
overview in ``_quality/_summary/dt=<day>/``."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from datetime import date
from typing import TYPE_CHECKING, Any

from storepulse.export.quality.run import AuditResult, SuiteOutcome, examples, plain

if TYPE_CHECKING:
    from storepulse.export.staging import StagedDataset

QUALITY = "_quality"
SUMMARY = "_summary"


def _folder(root: str, group: str, day: date) -> str:
    return f"{root.rstrip('/')}/{QUALITY}/{group}/dt={day.isoformat()}"


def _group_document(
    result: AuditResult, group: str, suites: list[SuiteOutcome], context: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "group": group,
        "day": result.day.isoformat(),
        "success": all(s.success for s in suites),
        "evaluated": sum(s.evaluated for s in suites),
        "failed": [str(f) for s in suites for f in s.failures],
        **context,
        "suites": {s.suite: s.result for s in suites},
    }


def write_results(
    fs: Any,
    root: str,
    result: AuditResult,
    *,
    context: Mapping[str, Any] | None = None,
    staged: Mapping[str, StagedDataset] | None = None,
) -> list[str]:
    """Write ``result.json`` and ``index.html`` per data set (and for the reconciliation) to
    ``<root>/_quality/<group>/dt=<day>/``, and the day's overview to ``_quality/_summary/``.
    ``root`` is a path of the pyarrow filesystem ``fs`` (the bucket); ``context`` (run id,
    strategy...) is added to every document. Returns the paths written."""
    context = dict(context or {})
    written = []
    for group, suites in result.groups().items():
        extra = {"staged": staged[group].to_dict()} if staged and group in staged else {}
        document = _group_document(result, group, suites, context | extra)
        written += _write_pair(
            fs, _folder(root, group, result.day), document, render_html(document)
        )
    overview = {**result.to_dict(), **context, "groups": _overview_rows(result)}
    written += _write_pair(
        fs, _folder(root, SUMMARY, result.day), overview, render_summary_html(overview)
    )
    return written


def _overview_rows(result: AuditResult) -> list[dict[str, Any]]:
    return [
        {
            "group": group,
            "success": all(s.success for s in suites),
            "evaluated": sum(s.evaluated for s in suites),
            "failed": sum(len(s.failures) for s in suites),
            "link": f"../../{group}/dt={result.day.isoformat()}/index.html",
        }
        for group, suites in result.groups().items()
    ]


def _write_pair(fs: Any, folder: str, document: Mapping[str, Any], page: str) -> list[str]:
    if fs.type_name == "local":  # S3 has no folders (creating one would leave a marker)
        fs.create_dir(folder, recursive=True)
    paths = [f"{folder}/result.json", f"{folder}/index.html"]
    contents = [json.dumps(document, indent=2, default=plain).encode(), page.encode()]
    for path, body in zip(paths, contents, strict=True):
        with fs.open_output_stream(path) as out:
            out.write(body)
    return paths


_STYLE = (
    "body{font:14px system-ui,sans-serif;margin:2em;color:#222}"
    "table{border-collapse:collapse;width:100%}th,td{border:1px solid #ccc;padding:4px 8px;"
    "text-align:left;vertical-align:top}th{background:#f3f3f3}.ok{color:#1a7f37}"
    ".fail{color:#c62828;font-weight:bold}code{font-size:12px}"
)


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>"
    )


def _status(success: bool) -> str:
    return "<span class='ok'>pass</span>" if success else "<span class='fail'>FAIL</span>"


def _result_cell(item: Mapping[str, Any]) -> str:
    result = item.get("result") or {}
    messages = (item.get("exception_info") or {}).get("messages") or []
    if messages:
        return html.escape("; ".join(messages))
    if "unexpected_count" in result:
        shown = examples(result)
        text = f"{result['unexpected_count']} of {result.get('element_count')} unexpected"
        return html.escape(text + (f": {shown}" if shown else ""))
    if "observed_value" in result:
        return html.escape(f"observed {plain(result['observed_value'])}")
    return ""


def render_html(document: Mapping[str, Any]) -> str:
    """One data set's suites as a table: expectation, status, what was observed."""
    rows = []
    for suite, result in document["suites"].items():
        for item in result.get("results", []):
            config = item["expectation_config"]
            rows.append(
                "<tr>"
                f"<td>{html.escape(suite)}</td>"
                f"<td>{html.escape(config.get('description') or config['type'])}<br>"
                f"<code>{html.escape(config['type'])}</code></td>"
                f"<td>{_status(item['success'])}</td><td>{_result_cell(item)}</td></tr>"
            )
    rows.sort(key=lambda row: "class='ok'" in row)  # failures first
    facts = "".join(
        f"<li>{html.escape(k)}: <code>{html.escape(json.dumps(v, default=str))}</code></li>"
        for k, v in document.items()
        if k not in {"suites", "failed", "group"}
    )
    body = (
        f"<p>{_status(document['success'])} &middot; {document['evaluated']} expectations, "
        f"{len(document['failed'])} failed</p><ul>{facts}</ul>"
        "<table><tr><th>suite</th><th>expectation</th><th>status</th><th>result</th></tr>"
        + "".join(rows)
        + "</table>"
    )
    return _page(f"{document['group']} - {document['day']}", body)


def render_summary_html(overview: Mapping[str, Any]) -> str:
    rows = "".join(
        f"<tr><td><a href='{html.escape(g['link'])}'>{html.escape(g['group'])}</a></td>"
        f"<td>{_status(g['success'])}</td><td>{g['evaluated']}</td><td>{g['failed']}</td></tr>"
        for g in overview["groups"]
    )
    failed = "".join(f"<li>{html.escape(f)}</li>" for f in overview["failed"])
    body = (
        f"<p>{_status(overview['success'])} &middot; {overview['evaluated']} expectations in "
        f"{overview['suites']} suites, {len(overview['failed'])} failed</p>"
        + (f"<ul>{failed}</ul>" if failed else "")
        + "<table><tr><th>data set</th><th>status</th><th>evaluated</th><th>failed</th></tr>"
        + rows
        + "</table>"
    )
    return _page(f"StorePulse audit - {overview['day']}", body)


def summary_uri(bucket: str, day: date) -> str:
    """Where the day's audit overview is (for people: the alert names it)."""
    return f"s3://{bucket}/{QUALITY}/{SUMMARY}/dt={day.isoformat()}/index.html"
