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
