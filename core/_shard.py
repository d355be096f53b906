"""Splitting a run's targets across processes: ``--shard I/N``.

A target belongs to shard ``hashmod(url, N)``, computed exactly as Prometheus'
``hashmod`` relabeling action does (the last 8 bytes of the key's MD5 digest,
big-endian, modulo N). The key is the check's target URL as written in the
config or on the command line, so the same target lands on the same shard in
every process, on every machine, and in a Prometheus that shards ``/probe``
scrapes on ``__param_target``. Python's ``hash()`` is never used: it is salted
per process.

``--shard auto/N`` takes the index from the environment a runner sets:
``JOB_COMPLETION_INDEX`` (Kubernetes Indexed Jobs), ``NOMAD_ALLOC_INDEX``
(Nomad) or ``ANYPROBE_SHARD_INDEX``, in that order.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import secrets
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ._errors import UsageError
from ._model import Target

#: Environment variables ``--shard auto/N`` reads, first found wins.
INDEX_VARIABLES = ("JOB_COMPLETION_INDEX", "NOMAD_ALLOC_INDEX", "ANYPROBE_SHARD_INDEX")
#: The run id shared by the shards of one run, when the runner sets it.
RUN_ID_VARIABLE = "ANYPROBE_RUN_ID"


def hashmod(key: str, modulus: int) -> int:
    """The shard of ``key`` among ``modulus``: Prometheus' ``hashmod``.

    >>> hashmod("https://example.com/", 4)
    1
    """
    digest = hashlib.md5(key.encode("utf-8"), usedforsecurity=False).digest()
    return int.from_bytes(digest[8:], "big") % modulus


@dataclass(frozen=True, slots=True)
class Shard:
    """Shard ``index`` of ``count`` (``0 <= index < count``) and the run it belongs to."""

    index: int
    count: int
    run_id: str

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def owns(self, url: str) -> bool:
        """Whether the target written as ``url`` belongs to this shard."""
        return hashmod(url, self.count) == self.index

    @property
    def labels(self) -> dict[str, str]:
        """The labels every result of this shard carries."""
        return {"shard": str(self.index), "run_id": self.run_id}

    def select(self, targets: Iterable[Target]) -> list[Target]:
        """The targets this shard checks, each labelled with ``shard`` and ``run_id``."""
        labels = self.labels
        return [
            dataclasses.replace(target, labels={**target.labels, **labels})
            for target in targets
            if self.owns(target.url)
        ]


def parse_shard(text: str, environ: Mapping[str, str] | None = None) -> Shard:
    """``I/N`` or ``auto/N`` as a :class:`Shard`; a one-line UsageError otherwise.

    The run id is ``ANYPROBE_RUN_ID`` when set (give every shard the same one),
    else made up here from the time and a random suffix.
    """
    environ = os.environ if environ is None else environ
    index_text, slash, count_text = text.strip().partition("/")
    if not slash:
        raise UsageError(f"--shard {text!r}: expected I/N or auto/N, like 0/4")
    try:
        count = _whole(count_text)
    except ValueError:
        raise UsageError(f"--shard {text!r}: N must be a whole number") from None
    if count < 1:
        raise UsageError(f"--shard {text!r}: N must be at least 1")
    source = "--shard"
    if index_text.strip().lower() == "auto":
        for variable in INDEX_VARIABLES:
            if environ.get(variable, "").strip():
                index_text, source = environ[variable], variable
                break
        else:
            raise UsageError(f"--shard {text!r}: none of {', '.join(INDEX_VARIABLES)} is set")
    try:
        index = _whole(index_text)
    except ValueError:
        message = f"{source} {index_text!r}: the shard index must be a whole number"
        raise UsageError(message) from None
    if not 0 <= index < count:
        raise UsageError(f"{source} {index}: the shard index must be from 0 to {count - 1}")
    run_id = environ.get(RUN_ID_VARIABLE, "").strip() or new_run_id()
    return Shard(index, count, run_id)


def _whole(text: str) -> int:
    """ASCII digits (after an optional ``-``) as an int; ``int()`` would also take
    ``+1``, ``1_0`` and other scripts' digits."""
    text = text.strip()
    digits = text.removeprefix("-")
    if not digits.isascii() or not digits.isdigit():
        raise ValueError(text)
    return int(text)


def new_run_id() -> str:
    """A run id: the UTC start time and a random suffix, ``20261124T100000Z-3f9a1c``."""
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)
