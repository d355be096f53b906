"""anyprobe.net.resolve on IP literals, on both backends: no lookup, the
family checked, unsafe hosts refused, the address policy asked."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from anyprobe import CheckFailed
from anyprobe.net import address_policy, resolve

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    ("host", "ip_family"), [("127.0.0.1", "any"), ("127.0.0.1", "ipv4"), ("::1", "ipv6")]
)
async def test_ip_literal_is_its_own_address(anyio_backend: str, host: str, ip_family: str) -> None:
    assert await resolve(host, 9, ip_family) == [host]  # type: ignore[arg-type]


@pytest.mark.parametrize(("host", "ip_family"), [("127.0.0.1", "ipv6"), ("::1", "ipv4")])
async def test_ip_literal_of_the_other_family_fails(
    anyio_backend: str, host: str, ip_family: str
) -> None:
    with pytest.raises(CheckFailed) as failed:
        await resolve(host, 9, ip_family)  # type: ignore[arg-type]
    assert str(failed.value) == f"{host} is not an {ip_family} address"


@pytest.mark.parametrize("host", ["fe80::1%a b", "fe80::1%a\x00"])
async def test_ipv6_literal_with_a_space_or_control_character_in_its_scope_is_refused(
    anyio_backend: str, host: str
) -> None:
    # ipaddress accepts these; a C resolver or connect() would not see them whole.
    with pytest.raises(CheckFailed) as failed:
        await resolve(host, 9)
    assert "control characters or spaces in a host name" in str(failed.value)


async def test_address_policy_is_asked_about_an_ip_literal(anyio_backend: str) -> None:
    asked: list[tuple[str, list[str]]] = []

    def policy(host: str, addresses: Sequence[str]) -> str | None:
        asked.append((host, list(addresses)))
        return "not this one" if addresses else None

    with address_policy(policy), pytest.raises(CheckFailed) as failed:
        await resolve("127.0.0.1", 9)
    assert str(failed.value) == "not this one"
    assert ("127.0.0.1", ["127.0.0.1"]) in asked
