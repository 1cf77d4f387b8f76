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


def test_several_broker_urls_are_read_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "OUTPLAN_AMQP_URL", "amqp://u:p@node1:5672/, amqp://u:p@node2:5673/vh ,amqps://u:p@node3/"
    )
    assert settings.load().amqp_urls == [
        "amqp://u:p@node1:5672/",
        "amqp://u:p@node2:5673/vh",
        "amqps://u:p@node3/",
    ]


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("amqp://u:s3cret@a/,,amqp://u:s3cret@b/", "URL 2 of 3 is empty (separate URLs with single commas)"),
        ("amqp://u:s3cret@a/,", "URL 2 of 2 is empty (separate URLs with single commas)"),
        ("amqp://u:s3cret@a/,http://u:s3cret@b/", "URL 2 of 2 must be amqp://[user:password@]host"),
        ("s3cret", "the URL must be amqp://[user:password@]host"),
        ("amqp://u:s3cret@a:99999/", "the URL is not a URL (or its port is not a number in 0-65535)"),
    ],
)
def test_a_broker_list_that_cannot_work_is_refused_without_showing_it(
    monkeypatch: pytest.MonkeyPatch, value: str, rule: str
) -> None:
    monkeypatch.setenv("OUTPLAN_AMQP_URL", value)
    with pytest.raises(settings.InvalidSettings) as refused:
        settings.load()
    [line] = refused.value.lines
    assert line.startswith(f"OUTPLAN_AMQP_URL: {rule}")
    assert "s3cret" not in str(refused.value)
