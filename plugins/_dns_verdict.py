"""The DNS probe's verdict: the response code and answers against what the
options expect, and the certificate of DNS over TLS or HTTPS."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyprobe
from anyprobe.tls import TlsInfo, expiry_verdict

from ._dns_options import DnsOptions

if TYPE_CHECKING:
    import dns.message

#: Answers shown in a summary before "(+N more)".
SUMMARY_ANSWERS = 4
#: Lines of each response section kept in a result's details.
DETAIL_LINES = 50


def add_certificate_verdict(
    outcome: anyprobe.Outcome, tls: TlsInfo, options: DnsOptions, ctx: anyprobe.CheckContext
) -> None:
    """The server certificate's expiry joins the answer's verdict; the worse one counts."""
    days = tls.cert_expiry_days()
    if days is not None:
        status, verdict = expiry_verdict(days, options)
        outcome.summary += f"; {verdict}"
        if status > outcome.status:
            outcome.status = status
    if ctx.explain or outcome.status is not anyprobe.Status.OK:
        outcome.details["tls"] = tls.details()


async def judge(
    what: str,
    rdtype: int,
    response: dns.message.Message,
    options: DnsOptions,
    ctx: anyprobe.CheckContext,
) -> anyprobe.Outcome:
    """Compare the response with what the options expect; the outcome.

    ``what`` names the question in summaries (``MX for example.com``);
    ``ctx.metrics`` holds the server and transport that answered.
    """
    answers, metrics = _answers(rdtype, response)
    ctx.metrics.update(metrics)
    rcode = metrics["rcode"]
    texts = [a.text for a in answers]
    server = ctx.metrics["server"]
    took = ctx.phases.get("query", 0.0) * 1000
    transport = ctx.metrics.get("transport", "udp")
    via = f"from {server}" + (f" over {transport}" if transport != "udp" else "")
    failure = await _failure(what, rcode, answers, options, via)
    if failure is not None:
        return anyprobe.Outcome.critical(
            f"{what}: {failure}", metrics=metrics, details=_sections(response)
        )
    details = _sections(response) if ctx.explain else {}
    if options.expect_rcode != "NOERROR":
        summary = f"{what}: {rcode}, as expected ({via}, {took:.1f} ms)"
    else:
        shown = _show(texts) if texts else "no records"
        summary = f"{what}: {shown} ({rcode} {via}, {took:.1f} ms)"
    return anyprobe.Outcome.ok(summary, metrics=metrics, details=details)


def _answers(rdtype: int, response: dns.message.Message) -> tuple[list[Answer], dict[str, Any]]:
    """The answers of type ``rdtype``, sorted, and the response's metrics."""
    import dns.flags
    import dns.rcode

    answers: list[Answer] = []
    ttls: list[int] = []
    for rrset in response.answer:
        if rrset.rdtype == rdtype:
            ttls.append(rrset.ttl)
            answers.extend(Answer.of(rdata) for rdata in rrset)
    # A set of records has no order; sorted, summaries do not change between runs.
    answers.sort(key=lambda a: a.text)
    metrics: dict[str, Any] = {
        "rcode": dns.rcode.to_text(response.rcode()),
        "answer_count": len(answers),
        "answers": [a.text for a in answers],
        "authoritative": bool(response.flags & dns.flags.AA),
    }
    if ttls:
        metrics["min_ttl"] = min(ttls)
    return answers, metrics


def _sections(response: dns.message.Message) -> dict[str, list[str]]:
    """The response as text, for reading a failure (a passing check's answers
    are in its metrics already)."""
    return {
        name: [line for rrset in rrsets for line in rrset.to_text().splitlines()][:DETAIL_LINES]
        for name, rrsets in (("answer", response.answer), ("authority", response.authority))
        if rrsets
    }


async def _failure(
    what: str, rcode: str, answers: list[Answer], options: DnsOptions, via: str
) -> str | None:
    """Why the response fails the options' expectations; None when it passes."""
    texts = [a.text for a in answers]
    if rcode != options.expect_rcode:
        found = f"{rcode} with {_show(texts)}" if texts else rcode
        return f"expected {options.expect_rcode}, got {found} {via}"
    if options.expect_rcode != "NOERROR":
        return None
    minimum = options.min_answers if options.min_answers is not None else 1
    if len(answers) < minimum:
        if not answers:
            return f"NOERROR but no {what.split()[0]} records {via} (expected at least {minimum})"
        return f"expected at least {minimum} answers, got {len(answers)}: {_show(texts)}"
    missing = [e for e in options.expect_answers if not any(a.matches(e) for a in answers)]
    if missing:
        return f"expected {_show(missing, limit=len(missing))}, got {_show(texts)}"
    if options.expect_any_answer and not any(
        a.matches(e) for a in answers for e in options.expect_any_answer
    ):
        return f"expected one of {', '.join(options.expect_any_answer)}, got {_show(texts)}"
    if options.answers_match is not None:
        pattern = anyprobe.compile_pattern(options.answers_match)
        bad = await _not_matching(pattern, texts)
        if bad:
            return f"{_show(bad)} do not match /{options.answers_match}/"
    if options.any_answer_matches is not None:
        pattern = anyprobe.compile_pattern(options.any_answer_matches)
        if len(await _not_matching(pattern, texts)) == len(texts):
            return f"no answer matches /{options.any_answer_matches}/, got {_show(texts)}"
    return None


async def _not_matching(pattern: anyprobe.Pattern, texts: list[str]) -> list[str]:
    """The texts ``pattern`` does not match; searched off the loop when long
    (a 64 KiB response of TXT records and a pattern with a large program)."""

    def not_matching() -> list[str]:
        return [text for text in texts if pattern.search(text) is None]

    work = sum(pattern.work(len(text)) for text in texts)
    return await anyprobe.off_loop(not_matching, work=work)


class Answer:
    """One answer's text as shown and compared: names without the final dot,
    TXT strings unquoted and joined, addresses in canonical form."""

    __slots__ = ("_keys", "rdata", "text")

    def __init__(self, text: str, rdata: Any) -> None:
        self.text = text
        self.rdata = rdata
        self._keys: frozenset[str] | None = None

    @classmethod
    def of(cls, rdata: Any) -> Answer:
        import dns.rdatatype

        if rdata.rdtype in (dns.rdatatype.TXT, dns.rdatatype.SPF):
            return cls(b"".join(rdata.strings).decode("utf-8", errors="replace"), rdata)
        return cls(rdata.to_text(omit_final_dot=True), rdata)

    @property
    def keys(self) -> frozenset[str]:
        """The forms an expected value may take: the text; for MX and SRV the host too."""
        if self._keys is None:
            import dns.rdatatype

            keys = {_normalise(self.text)}
            if self.rdata.rdtype == dns.rdatatype.MX:
                keys.add(_normalise(self.rdata.exchange.to_text(omit_final_dot=True)))
            elif self.rdata.rdtype == dns.rdatatype.SRV:
                keys.add(_normalise(self.rdata.target.to_text(omit_final_dot=True)))
            self._keys = frozenset(keys)
        return self._keys

    def matches(self, expected: str) -> bool:
        return _normalise(expected) in self.keys


def _normalise(text: str) -> str:
    text = " ".join(text.split()).rstrip(".").lower()
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return text


#: Characters of one answer a summary shows (a TXT record can hold 64 KB).
SUMMARY_ANSWER_CHARS = 200


def _show(texts: Sequence[str], limit: int = SUMMARY_ANSWERS) -> str:
    shown = ", ".join(
        text if len(text) <= SUMMARY_ANSWER_CHARS else text[:SUMMARY_ANSWER_CHARS] + "..."
        for text in texts[:limit]
    )
    if len(texts) > limit:
        shown += f" (+{len(texts) - limit} more)"
    return shown
