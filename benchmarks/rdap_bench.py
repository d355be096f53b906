"""RDAP domain-expiry checks per second: anyprobe's rdap probe vs a plain loop.

Both ask nginx on loopback (``local_targets.py``: ``/rdap/domain/example.test``
answers an RDAP domain object, RFC 9083) for ``example.test``. The plain loop
does what a small expiry script does without anyprobe: an anyio TCP
connection, ``GET /rdap/domain/example.test`` written and read with h11, the
JSON parsed, the ``expiration`` event found and its date turned into days
left. The probe is given the server with ``rdap_server`` (no bootstrap file is
read). On asyncio and on trio:

    python benchmarks/rdap_bench.py                 # 2000 checks, 20 at once, 5 rounds
    python benchmarks/rdap_bench.py --checks 500 --rounds 3
"""

from __future__ import annotations

import json
import time
from datetime import datetime

from _compare import compare, parse_args, timed_workers
from local_targets import LocalTargets

PATH = "/rdap/domain/example.test"


async def plain_loop(port: int, checks: int, concurrency: int) -> tuple[float, float]:
    """The baseline: one connection per check, h11, json, the expiration event."""
    import anyio
    import h11

    headers = [
        ("Host", f"127.0.0.1:{port}"),
        ("Accept", "application/rdap+json"),
        ("Connection", "close"),
    ]

    async def one_check() -> bool:
        async with await anyio.connect_tcp("127.0.0.1", port) as stream:
            conn = h11.Connection(h11.CLIENT)
            await stream.send(
                conn.send(h11.Request(method="GET", target=PATH, headers=headers))
                + conn.send(h11.EndOfMessage())
            )
            status, body = 0, b""
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    try:
                        conn.receive_data(await stream.receive(65536))
                    except anyio.EndOfStream:
                        conn.receive_data(b"")
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    break
        document = json.loads(body)
        dates = [e["eventDate"] for e in document["events"] if e["eventAction"] == "expiration"]
        expires = datetime.fromisoformat(dates[0].replace("Z", "+00:00")).timestamp()
        return status == 200 and (expires - time.time()) / 86400 > 30

    return await timed_workers(one_check, checks, concurrency)


def main() -> None:
    args = parse_args(__doc__)
    print(f"{args.checks} checks, {args.concurrency} at once, {args.rounds} rounds")
    with LocalTargets() as targets:
        port = targets.nginx_port
        print("\nRDAP domain query against nginx:\n")
        labels = {
            "plain": "plain anyio + h11 + json loop",
            "probe": "rdap probe called directly",
            "anyprobe": "anyprobe.check(rdap://...)",
        }
        options = {"rdap_server": f"http://127.0.0.1:{port}/rdap/"}
        compare(port, "rdap://example.test", plain_loop, labels, args, options)


if __name__ == "__main__":
    main()
