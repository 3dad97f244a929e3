"""A Redis URL's password never appears in what hct prints."""

from __future__ import annotations

import pytest

from hct_cli.bus.redis import shown_url

pytestmark = pytest.mark.timeout(10)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:s3cret-pass@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
        ("rediss://user:s3cret-pass@cache.example/2", "rediss://user:***@cache.example/2"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_passwords_are_masked(url: str, shown: str) -> None:
    assert shown_url(url) == shown


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("unix:///tmp/redis.sock?db=0&password=s3cret-pass", "unix:///tmp/redis.sock?db=0&password=***"),
        ("notaurl", "notaurl"),  # nothing to mask: shown exactly as given
    ],
)
def test_a_password_in_the_query_is_masked_too(url: str, shown: str) -> None:
    assert shown_url(url) == shown


@pytest.mark.parametrize(
    "url",
    [
        "redis://:p%40ss%2Fw0rd@127.0.0.1:6379/0",
        "rediss://user:s3cret@cache.example/2",
        "unix:///r.sock?password=s3cret",
    ],
)
def test_a_masked_url_gets_its_password_back(url: str) -> None:
    from urllib.parse import unquote, urlsplit

    from hct_cli.bus.redis import is_masked, with_password

    password = unquote(urlsplit(url).password or "") or "s3cret"
    masked = shown_url(url)
    assert is_masked(masked) and not is_masked(url)
    restored = with_password(masked, password)
    assert urlsplit(restored).hostname == urlsplit(url).hostname
    assert password not in masked
    assert (unquote(urlsplit(restored).password or "") or "s3cret") == password
