"""Run checks and print, as JSON, the modules first imported while they ran.

``python -m tests.reliability.imports_during_run BACKEND SPEC`` where SPEC is a
JSON list of ``[url, options]``. The run's probes load their dependencies
first (``Run.load_dependencies``), then the checks run; a module that appears
in ``sys.modules`` only after that was imported on the event loop, inside a
check's timeout. Prints ``{"imported": [...], "statuses": {url: status}}``.
"""

from __future__ import annotations

import json
import sys

import anyio

import anyprobe
from anyprobe._run import Run


async def main(spec: list[tuple[str, dict[str, object]]]) -> None:
    manager = anyprobe.PluginManager()
    manager.load_entrypoints(autoload=False)
    targets: list[anyprobe.Target] = []
    for url, options in spec:
        _, built = anyprobe.prepare([url], manager=manager, options=options, timeout=5)
        targets.extend(built)
    run = Run(targets, manager, watchdog=False)
    statuses: dict[str, str] = {}
    # Before execute(), as Run.results() asks: a check refused at once may
    # finish before a task started beside execute() would have subscribed.
    results = run.results()

    async def collect() -> None:
        async with results:
            async for result in results:
                statuses[result.target] = result.status.value

    await run.load_dependencies()
    before = set(sys.modules)
    async with anyio.create_task_group() as tg:
        tg.start_soon(collect)
        await run.execute()
    imported = sorted(set(sys.modules) - before)
    print(json.dumps({"imported": imported, "statuses": statuses}))


if __name__ == "__main__":
    anyio.run(main, json.loads(sys.argv[2]), backend=sys.argv[1])
