#!/usr/bin/env bash
# Install what the test suite needs, then lint, type-check and test.
# This is the README's test command; .ci/run calls it as it is.
set -euo pipefail
cd "$(dirname "$0")/.."

# System packages the interop tests run against (postgresql: the history store's
# server, started by the tests as its own user), and venv for the example plugin
# (skipped when present).
packages=(openssh-server openssh-client dnsmasq prometheus python3-venv chrony nftables postgresql
    chromium chromium-driver)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})) && command -v apt-get >/dev/null; then
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        -o Dpkg::Options::=--force-confold "${missing[@]}" >/dev/null
    # The packages' own services are not needed: the tests start their own.
    for service in ssh dnsmasq prometheus prometheus-node-exporter chrony postgresql; do
        $SUDO service "$service" stop >/dev/null 2>&1 || true
    done
fi

python3 -m pip install -q --disable-pip-version-check -e '.[dev,docs]'

python3 -m ruff check core plugins tests benchmarks
python3 -m ruff format --check core plugins tests benchmarks
bash scripts/typecheck.sh

# The docs site, strictly (broken links, missing pages and snippets fail).
NO_MKDOCS_2_WARNING=1 python3 -m mkdocs build --strict --quiet --site-dir build/site
# The example plugin package, installed as a third party's would be, with its own tests
# and the docs pages that use it: in a virtual environment of its own under build/, so
# that its probe and reporter never show up in this environment's anyprobe. That venv
# sees this environment's packages (anyprobe, pytest, trio...) through a .pth file, which
# works whether python3 is a system interpreter or itself a virtual environment's.
example_venv=build/example-venv
python3 -m venv --clear "$example_venv"
"$example_venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
    -e . -e examples/anyprobe-example
# Only now: the example's build must not see this environment's setuptools.
outer_site_dirs=$(python3 -c 'import site, sys; print(repr([p for p in sys.path if p.endswith("-packages")]))')
example_site=$("$example_venv/bin/python" -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
printf 'import site; list(map(site.addsitedir, %s))\n' "$outer_site_dirs" >"$example_site/outer-environment.pth"
"$example_venv/bin/python" -m pytest -q -p no:randomly examples/anyprobe-example/tests
# The docs pages run `anyprobe` at a shell: the example venv's, which knows the plugin.
PATH="$PWD/$example_venv/bin:$PATH" "$example_venv/bin/python" -m pytest -q -p no:randomly tests/test_docs.py \
    -k "writing-a-probe.md or writing-a-reporter.md"

# pytest exits 5 when it collected no test: that is a failure here too.
python3 -m pytest -q -p no:randomly "$@"
