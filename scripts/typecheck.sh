#!/usr/bin/env bash
# mypy --strict on core/ and plugins/ as the package `anyprobe` they install as.
# mypy cannot follow setuptools' package-dir mapping, so lay the package out
# with symlinks (core/* as anyprobe/*, plugins/ as anyprobe/plugins) and check that.
set -euo pipefail
cd "$(dirname "$0")/.."
tree=build/typecheck
rm -rf "$tree" && mkdir -p "$tree/anyprobe"
for f in core/*; do ln -s "../../../$f" "$tree/anyprobe/$(basename "$f")"; done
ln -s ../../../plugins "$tree/anyprobe/plugins"
MYPYPATH="$tree" python3 -m mypy --strict --config-file pyproject.toml -p anyprobe "$@"
