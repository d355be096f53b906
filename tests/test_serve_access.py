"""Who sees what on ``anyprobe serve``: with basic-auth users in the web config,
``[access] public`` opens the status page and the badges for reading while the
JSON API, admin actions, /probe and /metrics keep wanting credentials; a push
check's route is authenticated by its token alone.

Real servers on loopback, real bcrypt hashes, both backends.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from anyprobe import PluginManager, UsageError
from anyprobe._serve import ProbeServer, load_serve_config
from anyprobe._serve_push import new_token
from anyprobe._serve_security import access_part, load_web_config
from tests.servers.push import client, serving

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("asgi_server")]

GOOD = ("prometheus", "right-password")
#: Every part of the server: (method, path).
READS_OF_THE_PAGE = [("GET", "/"), ("HEAD", "/"), ("GET", "/check/backup")]
READS_OF_BADGES = [("GET", "/badge/backup/status.svg"), ("GET", "/badge/backup/uptime-7d.svg")]
PROTECTED = [
    ("GET", "/api/v1/checks"),
    ("GET", "/api/v1/checks/backup/results"),
    ("POST", "/-/reload"),
    ("POST", "/-/maintenance"),
    ("POST", "/check/backup/silence"),  # a write under a public prefix
    ("POST", "/"),
    ("GET", "/probe"),
    ("GET", "/metrics"),
    ("GET", "/-/healthy"),
    ("GET", "/anything/added/later"),
]


def bcrypt_hash(password: str) -> str:
    import bcrypt

    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(4)).decode()


def web_config(tmp_path: Path, public: str | None) -> Path:
    path = tmp_path / "web.toml"
    access = f"[access]\npublic = {public}\n" if public is not None else ""
    path.write_text(
        f'[basic_auth_users]\nprometheus = "{bcrypt_hash(GOOD[1])}"\n{access}', encoding="utf-8"
    )
    return path


@pytest.fixture
def server(manager: PluginManager, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ProbeServer:
    monkeypatch.setenv("BACKUP_PUSH_TOKEN", new_token())
    config = tmp_path / "checks.toml"
    config.write_text(
        '[[check]]\nname = "backup"\npush = true\ninterval = "1d"\n'
        'token_env = "BACKUP_PUSH_TOKEN"\n',
        encoding="utf-8",
    )
    return ProbeServer(manager, load_serve_config(str(config), manager), config_path=str(config))


async def statuses(
    http: httpx.AsyncClient, url: str, requests: list[tuple[str, str]], auth: object = None
) -> dict[tuple[str, str], int]:
    found = {}
    for method, path in requests:
        response = await http.request(method, f"{url}{path}", auth=auth)  # type: ignore[arg-type]
        found[(method, path)] = response.status_code
    return found


async def test_public_page_and_badges_are_read_without_credentials_the_rest_is_not(
    server: ProbeServer, tmp_path: Path
) -> None:
    web = load_web_config(web_config(tmp_path, '["page", "badges"]'))
    token = server.config.push_checks[0].token.get_secret_value()
    async with serving(server, web) as url, client() as http:
        public = await statuses(http, url, READS_OF_THE_PAGE + READS_OF_BADGES)
        refused = await statuses(http, url, PROTECTED)
        wrong = await statuses(http, url, PROTECTED, auth=("prometheus", "wrong"))
        allowed = await statuses(http, url, PROTECTED, auth=GOOD)
        pushed = await http.get(f"{url}/push/{token}")
        reload = await http.post(f"{url}/-/reload", auth=GOOD)
    # Not 401: the request reached the app (a page not built yet is 404).
    assert all(code != 401 for code in public.values()), public
    assert public[("GET", "/")] == 200
    assert set(refused.values()) == set(wrong.values()) == {401}, (refused, wrong)
    assert 401 not in allowed.values(), allowed
    assert (reload.status_code, reload.text) == (200, "OK: config reloaded\n")
    assert pushed.status_code == 200


async def test_without_public_everything_but_push_wants_credentials(
    server: ProbeServer, tmp_path: Path
) -> None:
    web = load_web_config(web_config(tmp_path, None))
    token = server.config.push_checks[0].token.get_secret_value()
    async with serving(server, web) as url, client() as http:
        refused = await statuses(http, url, READS_OF_THE_PAGE + READS_OF_BADGES + PROTECTED)
        page = await http.get(f"{url}/", auth=GOOD)
        pushed = await http.post(f"{url}/push/{token}", data={"msg": "no credentials needed"})
        unknown = await http.get(f"{url}/push/{new_token()}")
    assert set(refused.values()) == {401}, refused
    assert page.status_code == 200
    assert pushed.status_code == 200
    assert server.latest["backup"].summary == "no credentials needed"
    assert unknown.status_code == 404


async def test_only_the_badges_can_be_public(server: ProbeServer, tmp_path: Path) -> None:
    web = load_web_config(web_config(tmp_path, '["badges"]'))
    async with serving(server, web) as url, client() as http:
        badges = await statuses(http, url, READS_OF_BADGES)
        page = await statuses(http, url, READS_OF_THE_PAGE)
    assert 401 not in badges.values()
    assert set(page.values()) == {401}


def test_public_names_only_what_it_can_open(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match=r"web\.toml: access\.public\.0: .*'page' or 'badges'"):
        load_web_config(web_config(tmp_path, '["api"]'))
    with pytest.raises(UsageError, match=r"access\.everyone: Extra inputs"):
        path = tmp_path / "other.toml"
        path.write_text("[access]\neveryone = true\n")
        load_web_config(path)


def test_paths_are_classified_by_prefix() -> None:
    assert [
        access_part(path)
        for path in (
            "/",
            "/check/db",
            "/check/db/history",
            "/static/page.css",
            "/badge/db/status.svg",
            "/api/v1/incidents",
            "/push/abc",
            "/probe",
            "/metrics",
            "/-/reload",
            "/checks",
            "/badges",
            "//api/v1/checks",
        )
    ] == [
        "page", "page", "page", "page", "badges", "api", "push",
        "protected", "protected", "protected", "protected", "protected", "protected",
    ]  # fmt: skip


async def test_the_server_tells_routes_what_needs_credentials(
    server: ProbeServer, tmp_path: Path
) -> None:
    web = load_web_config(web_config(tmp_path, '["page"]'))
    async with serving(server, web) as url, client() as http:
        await http.get(f"{url}/")
        access = server.access
    assert access is not None
    assert not access.requires_credentials("GET", "/check/backup")
    assert access.requires_credentials("POST", "/check/backup/silence")
    assert access.requires_credentials("GET", "/api/v1/checks")
    assert access.requires_credentials("GET", "/badge/backup/status.svg")
    assert not access.requires_credentials("POST", "/push/whatever")


async def test_a_changed_public_list_is_in_force_without_a_restart(
    server: ProbeServer, tmp_path: Path
) -> None:
    import os

    import anyio

    path = web_config(tmp_path, None)
    web = load_web_config(path)
    async with serving(server, web) as url, client() as http:
        before = (await http.get(f"{url}/")).status_code
        web_config(tmp_path, '["page"]')
        os.utime(path, ns=(0, 0))  # a stamp of its own, however fast the rewrite
        after = before
        for _ in range(300):  # bounded: until the file has been read again (1 s polls)
            after = (await http.get(f"{url}/")).status_code
            if after != 401:
                break
            await anyio.sleep(0.05)
        api = (await http.get(f"{url}/api/v1/checks")).status_code
    assert (before, after, api) == (401, 200, 401)
