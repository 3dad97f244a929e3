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


def test_a_sealed_input_is_recognised_again_only_at_its_real_value() -> None:
    from hct_cli.redact import _REMEMBERED, placeholders, seal, unseal

    real = {"text": "use tok-0123456789 here", "n": 3}
    redact = Redactor({"SVC_TOKEN": "tok-0123456789"})
    redacted = redact.data(real)
    sealed = seal(real)
    assert "tok-0123456789" not in sealed and placeholders(redacted) == ["SVC_TOKEN"]
    assert unseal(redacted, sealed, {"SVC_TOKEN": "tok-0123456789"}) == real
    assert unseal(redacted, sealed, {"SVC_TOKEN": "tok-9999999999"}) is None
    assert unseal(redacted, sealed, {}) is None
    assert unseal(redacted, sealed, {}, given={"text": "use it here", "n": 3}) is None
    assert unseal(redacted, sealed, {}, given=real) == real
    # Given again rather than from the environment, it is redacted all the same.
    try:
        assert "tok-0123456789" not in Redactor.from_environ({}).text("say tok-0123456789")
    finally:
        _REMEMBERED.clear()  # process-wide: leave other tests a clean slate
    assert seal(real) != sealed  # salted: the same value seals differently each time
