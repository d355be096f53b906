"""The HTTP probe's verdict: status, headers, body and JSON assertions, and
the certificates the check saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import anyprobe
from anyprobe.masking import Masker
from anyprobe.tls import TlsInfo, client_certificate_expiry_days, expiry_verdict

from ._http1 import Response

if TYPE_CHECKING:
    from ._http_options import HttpOptions


@dataclass(slots=True)
class Exchange:
    """What a check saw across its hops."""

    redirects: list[dict[str, Any]] = field(default_factory=list)
    tls: list[tuple[str, TlsInfo]] = field(default_factory=list)


async def verdict(
    response: Response,
    options: HttpOptions,
    exchange: Exchange,
    elapsed: float,
    ctx: anyprobe.CheckContext,
    masker: Masker,
    *,
    status_only: bool = False,
) -> anyprobe.Outcome:
    """The outcome of a check whose last hop got ``response`` after ``elapsed``
    seconds: the first assertion that fails, else the certificate verdict.
    ``status_only`` says the options assert nothing but the status (see
    :func:`asserts_status_only`): nothing more to look at."""
    metrics: dict[str, Any] = {
        "http_status": response.status,
        "http_version": response.http_version,
        "body_bytes": response.body_bytes,
        "redirects": len(exchange.redirects),
        "address": response.address,
    }
    details: dict[str, Any] = {}
    if exchange.redirects:
        details["redirects"] = exchange.redirects
    cert_status = anyprobe.Status.OK
    cert_summary = ""
    if exchange.tls:
        # The leaf that expires first among the hops (usually there is one).
        shown_url, tls = min(
            exchange.tls, key=lambda item: item[1].cert_expiry_days() or float("inf")
        )
        metrics.update(tls.metrics())
        details["tls"] = {"url": shown_url, **tls.details()}
        days = tls.cert_expiry_days()
        if days is not None:
            cert_status, cert_summary = expiry_verdict(days, options)
    client_days = client_certificate_expiry_days(options, ctx)
    if client_days is not None:
        metrics["client_cert_expiry_days"] = client_days
    took = f"in {elapsed * 1000:.0f} ms"
    if exchange.redirects:
        n = len(exchange.redirects)
        took += f" after {n} redirect{'s' if n != 1 else ''}"
    if status_only:
        failure = _status_failure(response.status, options)
    else:
        failure = await _assertion_failure(response, options, masker)
    if failure is not None:
        return anyprobe.Outcome.critical(
            f"HTTP {response.status}: {failure}", metrics=metrics, details=details
        )
    if response.truncated:
        return anyprobe.Outcome.critical(
            f"HTTP {response.status}: body larger than max_body_bytes "
            f"({options.max_body_bytes} bytes)",
            metrics=metrics,
            details=details,
        )
    summary = f"HTTP {response.status} {took}"
    if exchange.tls and not options.verify:
        # As the SSH probe says of a host key: a pass that proves less, said so.
        summary += "; certificate NOT verified (verify = false)"
        metrics["cert_verified"] = False
    if cert_status is not anyprobe.Status.OK:
        return anyprobe.Outcome(
            cert_status, f"{summary}; {cert_summary}", metrics=metrics, details=details
        )
    return anyprobe.Outcome.ok(summary, metrics=metrics, details=details)


async def _assertion_failure(
    response: Response, options: HttpOptions, masker: Masker
) -> str | None:
    """The first assertion the response fails, described; None when all hold.

    Decoding, searching and parsing a body are done in a worker thread when
    their worst case is past ``anyprobe.OFF_LOOP_BYTES`` (a large body, a
    pattern with a large program), so that the event loop (other checks, the
    timeout, signals) keeps running.
    """
    failure = _status_failure(response.status, options)
    if failure is not None:
        return failure
    for name, pattern in options._header_patterns:
        value = response.header(name)
        if value is None:
            return f"header {name} missing"
        if not await pattern.search_off_loop(value):
            shown = _clip(masker.text(value))
            return f"header {name} is {shown}, expected to match {pattern.pattern!r}"
    if not options.needs_body:
        return None
    size = len(response.body)
    patterns = (*options._body_patterns, *options._body_antipatterns)
    # Decoding and parsing count a byte each (the unit of OFF_LOOP_BYTES).
    work = size * (2 if options._json_expressions else 1) + sum(p.work(size) for p in patterns)
    return await anyprobe.off_loop(body_failure, response.body, options, masker, work=work)


def asserts_status_only(options: HttpOptions) -> bool:
    """Whether the options assert nothing of a response but its status (no
    header or body assertion): the same for every check with them."""
    return not options._header_patterns and not options.needs_body


def _status_failure(status: int, options: HttpOptions) -> str | None:
    if status_expected(status, options.expect_status):
        return None
    wanted = ", ".join(str(s) for s in options.expect_status)
    return f"expected status {wanted}"


def body_failure(body: bytes, options: HttpOptions, masker: Masker) -> str | None:
    """The first body assertion ``body`` fails, described; None when all hold.

    Plain code, to run in a worker thread for a large body: invalid UTF-8
    is replaced by U+FFFD before the patterns see the text.
    """
    text = body.decode("utf-8", errors="replace")
    for needle in options.body_contains:
        if needle not in text:
            return f"body does not contain {_clip(needle)}"
    for pattern in options._body_patterns:
        if pattern.search(text) is None:
            return f"body does not match {pattern.pattern!r}"
    for pattern in options._body_antipatterns:
        found = pattern.search(text)
        if found is not None:
            # A secret the match overlaps is masked whole, even when the
            # pattern matched only its first characters.
            shown = masker.excerpt(text, found.start, found.end)
            return f"body matches {pattern.pattern!r} ({_clip(shown)})"
    if options._json_expressions:
        return json_failure(masker.text(text), options._json_expressions)
    return None


def _clip(value: str, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def status_expected(status: int, expected: Sequence[int | str]) -> bool:
    """True when ``status`` is one of the codes or in one of the classes (``2xx``)."""
    for item in expected:
        if isinstance(item, int):
            if status == item:
                return True
        elif status // 100 == int(item[0]):
            return True
    return False


def json_failure(text: str, expressions: Sequence[tuple[str, Any]]) -> str | None:
    """The first JSON assertion that is not true, described; None when all hold."""
    import json

    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        return f"body is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    except RecursionError:
        return "body is not JSON anyprobe can read (nested too deep)"
    for source, expression in expressions:
        try:
            value = expression.search(document)
        except Exception as exc:  # a JMESPath function given the wrong types
            return f"JSON assertion {source!r} failed: {exc}"
        if value is not True:
            return f"JSON assertion {source!r} is not true{_found(expression, document, value)}"
    return None


def _found(expression: Any, document: Any, value: Any) -> str:
    """`` (status is 'DOWN')`` for ``status == 'UP'``: what the left side holds."""
    import json

    node = expression.parsed
    if node.get("type") == "comparator" and node.get("children"):
        from jmespath.visitor import TreeInterpreter  # type: ignore[import-untyped]

        left = node["children"][0]
        try:
            found = TreeInterpreter().visit(left, document)
        except Exception:
            return ""
        shown = expression.expression.split(_COMPARATORS.get(node["value"], "\0"))[0].strip()
        return f" ({shown} is {_clip(json.dumps(found))})"
    return f" (got {_clip(json.dumps(value))})"


_COMPARATORS = {"eq": "==", "ne": "!=", "lt": "<", "lte": "<=", "gt": ">", "gte": ">="}
