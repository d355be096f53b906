"""The table reporter's options, apart from it so that a run that sets none
imports no pydantic (see :class:`anyprobe.lazy_model`)."""

from __future__ import annotations

from pydantic import Field

import anyprobe

__all__ = ["TableOptions"]


class TableOptions(anyprobe.ReporterOptions):
    sort: str = Field(
        "latency",
        pattern="^(latency|status|name|none)$",
        description="Row order: latency (fastest first), status (worst first), name, none.",
    )
