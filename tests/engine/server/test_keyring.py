"""API key configuration: validation messages that never show a key, digests only, callers
and the tenants each may read."""

from __future__ import annotations

import re

import pytest

from tokenwatt.engine.server import Caller, KeyRing, ServeConfig, key_tenant
from tokenwatt.engine.server.protocol import ApiError
from tokenwatt.errors import ConfigError


@pytest.mark.parametrize(
    ("api_keys", "message"),
    [
        (("good", ""), "API key #2 is empty"),
        (("has space",), "API key #1 contains whitespace (a stray space or newline?)"),
        (("trailing-newline\n",), "API key #1 contains whitespace"),
        (("clé",), "API key #1 has a character outside printable ASCII"),
    ],
    ids=["empty", "space", "newline", "non-ascii"],
)
def test_malformed_keys_are_refused_by_position(api_keys: tuple[str, ...], message: str) -> None:
    """ServeConfig names the bad key by its position, never by its value."""
    with pytest.raises(ConfigError, match=re.escape(message)) as e:
        ServeConfig(api_keys=api_keys)
    assert "has space" not in str(e.value) and "clé" not in str(e.value)


def test_malformed_admin_key_is_named_as_one() -> None:
    """An admin key's problem names it as an admin key."""
    with pytest.raises(ConfigError, match="admin key #1 is empty"):
        ServeConfig(admin_keys=("",))


def test_a_key_both_api_and_admin_is_refused() -> None:
    """Whether a key may read every tenant is the operator's call, so listing it in both is
    an error saying which list to keep it in."""
    with pytest.raises(ConfigError, match=r"1 key\(s\) are given both as an API key and as"):
        ServeConfig(api_keys=("a", "shared"), admin_keys=("shared",))


def test_a_lone_string_is_refused() -> None:
    """api_keys="abc" would silently accept the keys a, b and c; it is refused instead."""
    with pytest.raises(ConfigError, match=r"api_keys is a tuple of keys, not a string"):
        ServeConfig(api_keys="abc")  # type: ignore[arg-type]


def test_lists_become_tuples_and_repr_hides_keys() -> None:
    """A list is kept as a tuple (the config stays hashable); repr shows no key."""
    config = ServeConfig(api_keys=["k-one"], admin_keys=["k-admin"])  # type: ignore[arg-type]
    assert (config.api_keys, config.admin_keys) == (("k-one",), ("k-admin",))
    assert "k-one" not in repr(config) and "k-admin" not in repr(config)
    hash(config)


def test_defaults_are_no_keys() -> None:
    """By default a server has no keys (open, as before)."""
    assert (ServeConfig().api_keys, ServeConfig().admin_keys) == ((), ())
    assert not KeyRing().enabled


def test_keyring_identifies_callers() -> None:
    """An API key is a non-admin caller under its key tenant; an admin key an admin."""
    ring = KeyRing(["k1", "k2", "k1"], ["boss"])
    assert ring.caller("Bearer k2") == Caller(tenant=key_tenant("k2"), admin=False)
    assert ring.caller("bearer   boss ") == Caller(tenant=key_tenant("boss"), admin=True)
    assert repr(ring) == "KeyRing(api_keys=2, admin_keys=1)"


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, None),
        ("", None),
        ("Token k1", None),
        ("Bearer", None),
        ("Bearer k3", "invalid_api_key"),
    ],
)
def test_keyring_refuses_with_401(header: str | None, code: str | None) -> None:
    """Missing, non-bearer and unknown keys are 401s; only an unknown key has a code."""
    with pytest.raises(ApiError) as caught:
        KeyRing(["k1"]).caller(header)
    assert (caught.value.status, caught.value.code) == (401, code)


def test_key_tenant_is_a_hash() -> None:
    """A key's tenant is `key:` + 12 hex digits of its SHA-256 (the same as without keys)."""
    assert key_tenant("sk-demo") == "key:f77894fdfa58"  # printf sk-demo | sha256sum


def test_caller_tenants_stay_in_the_key_namespace() -> None:
    """A `user` becomes a sub-tenant of the key; a caller reads only its own namespace."""
    alice = Caller(tenant="key:aaaaaaaaaaaa")
    assert alice.tenant_for(None) == "key:aaaaaaaaaaaa"
    assert alice.tenant_for("bob") == "key:aaaaaaaaaaaa/bob"
    assert alice.may_read("key:aaaaaaaaaaaa") and alice.may_read("key:aaaaaaaaaaaa/bob")
    assert not alice.may_read("key:aaaaaaaaaaab")
    assert not alice.may_read("key:aaaaaaaaaaaa2")  # a prefix of another name is not enough
    assert not alice.may_read("bob")
    assert Caller(tenant="key:cccccccccccc", admin=True).may_read("bob")
