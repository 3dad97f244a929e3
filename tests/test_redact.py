"""Secrets of the environment are replaced wherever hct writes or shows text."""

from __future__ import annotations

import pytest

from hct_cli.redact import Redactor

pytestmark = pytest.mark.timeout(10)

KEY = "sk-test-0123456789abcdef"


def test_only_secret_names_with_long_values_count() -> None:
    redactor = Redactor.from_environ(
        {
            "OPENAI_API_KEY": KEY,
            "GH_TOKEN": "ghp_abcdefgh12",
            "DB_PASSWORD": "hunter2hunter2",
            "MY_SECRET": "short",  # under 8 characters: too common a string to hide
            "HOME": "/home/someone-long",  # not a secret's name
        }
    )
    text = f"{KEY} ghp_abcdefgh12 hunter2hunter2 short /home/someone-long"
    assert redactor.text(text) == (
        "[redacted OPENAI_API_KEY] [redacted GH_TOKEN] [redacted DB_PASSWORD] short /home/someone-long"
    )


def test_data_is_redacted_deeply_and_left_alone_without_secrets() -> None:
    redactor = Redactor.from_environ({"X_KEY": KEY})
    data = {"output": [f"key={KEY}", {"nested": KEY}], KEY: 1, "n": 3}
    assert redactor.data(data) == {
        "output": ["key=[redacted X_KEY]", {"nested": "[redacted X_KEY]"}],
        "[redacted X_KEY]": 1,
        "n": 3,
    }
    nothing = Redactor.from_environ({})
    assert not nothing and nothing.data(data) is data


def test_a_secret_containing_another_is_replaced_whole() -> None:
    redactor = Redactor.from_environ({"A_KEY": "abcdefgh", "B_KEY": "abcdefgh-and-more"})
    assert redactor.text("abcdefgh-and-more abcdefgh") == "[redacted B_KEY] [redacted A_KEY]"
