"""Settings that cannot work are refused at start, one line per variable, naming the rule."""

import pytest

from worker import settings

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("", "must not be empty (CloudEvents source)"),
        ("worker\udcff", "must be valid UTF-8"),  # a byte that is not UTF-8, as os.environ gives it
        ("outplan\x07worker", "must not contain control characters"),
        ("outplan\x85worker", "must not contain control characters"),
    ],
)
def test_an_event_source_no_subscriber_could_read_is_refused(
    monkeypatch: pytest.MonkeyPatch, value: str, rule: str
) -> None:
    monkeypatch.setenv("OUTPLAN_EVENT_SOURCE", value)
    with pytest.raises(settings.InvalidSettings) as refused:
        settings.load()
    assert refused.value.lines == [f"OUTPLAN_EVENT_SOURCE: {rule}"]


@pytest.mark.parametrize("value", ["outplan-worker", "/outplans/wörker", "urn:example:outplan"])
def test_an_event_source_in_utf8_is_kept_as_given(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("OUTPLAN_EVENT_SOURCE", value)
    assert settings.load().event_source == value
