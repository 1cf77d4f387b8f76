"""The lexer that finds the metric names in a PromQL expression, and the names an exposition offers."""

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from tests.support.promql import exposed_names, metric_names, sampled_names, tokens

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        (
            "histogram_quantile(0.99, sum by (le, command) "
            '(rate(x_bucket{job=~"$job", a="}"}[$__rate_interval])))',
            {"x_bucket"},
        ),
        ("sum(rate(a_total[5m])) by (le) / ignoring (reason) group_left (version) b", {"a_total", "b"}),
        ("max by (job) (a) == 0 or absent(b)", {"a", "b"}),
        ('a{r="X"} unless a{r="X"} offset 15m', {"a"}),
        ("rate(a[5m:30s] @ end()) > bool 1e-3 * 0x1f - .5", {"a"}),
        ('{__name__="a", job="j"} + {"b.c"} + on(instance) c  # d_total in a comment', {"a", "b.c", "c"}),
        (
            'label_replace(a, "dst", "$1", "src", "(.*)") and topk(5, b) or count_values("v", c)',
            {"a", "b", "c"},
        ),
        ("SUM BY (le) (a) AND ON (x) b", {"a", "b"}),
        ("job:outplan_commands:rate5m", {"job:outplan_commands:rate5m"}),
        ("vector(1) + time()", set()),
    ],
)
def test_metric_names_finds_the_metrics_and_nothing_else(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


@pytest.mark.parametrize("expr", ["rate(a[5m]", "a{job='x'", "a]", "a ; b", "a{job=~'x')"])
def test_metric_names_refuses_what_it_cannot_read(expr: str) -> None:
    with pytest.raises(ValueError):
        metric_names(expr)


def test_tokens_keep_strings_whole() -> None:
    assert [t.text for t in tokens('a{b="c}\\"d", e=\'f\'}')] == [
        "a",
        "{",
        "b",
        "=",
        '"c}\\"d"',
        ",",
        "e",
        "=",
        "'f'",
        "}",
    ]


def test_an_exposition_offers_declared_families_before_their_first_sample() -> None:
    registry = CollectorRegistry()
    Counter("c", "labelled, never incremented", ["reason"], registry=registry)
    Counter("d", "unlabelled", registry=registry)
    Histogram("h_seconds", "labelled", ["command"], registry=registry)
    Gauge("g", "plain", registry=registry)
    text = generate_latest(registry).decode()
    assert {
        "c_total",
        "d_total",
        "h_seconds_bucket",
        "h_seconds_sum",
        "h_seconds_count",
        "g",
    } <= exposed_names(text)
    assert not {"c", "h_seconds"} & exposed_names(text)
    assert {"d_total", "g"} <= sampled_names(text)
    assert not {"c_total", "h_seconds_bucket"} & sampled_names(text)
