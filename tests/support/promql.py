"""The metric names a PromQL expression reads, and the names a Prometheus exposition offers.

``metric_names`` is a small lexer, not a PromQL parser: it drops what can never be a metric name
(strings, numbers, durations, label matchers, range and subquery brackets, the label lists of
``by``/``without``/``on``/``ignoring``/``group_left``/``group_right``, function and aggregation
names, keywords, comments and Grafana's ``$variables``) and returns the identifiers that are
left, plus the names given as ``{__name__="..."}`` or as a quoted name inside the braces.
A character it does not know raises ``ValueError``, so a check built on it fails instead of
passing over an expression it could not read.
"""

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

#: Keywords, modifiers and aggregation operators: words PromQL reads as such wherever they stand
#: (case-insensitive), so never a metric name (``sum by (le) (...)`` has no ``(`` after ``sum``).
KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "inf", "nan", "atan2"}
    | {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values"}
    | {"bottomk", "topk", "quantile", "limitk", "limit_ratio"}
)
#: Modifiers whose parenthesised list holds label names, not expressions.
LABEL_LISTS = frozenset({"by", "without", "on", "ignoring", "group_left", "group_right"})

_TOKENS = re.compile(
    r"""
    (?P<space>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<variable>\$\{[^}]*\}|\$\w+)
  | (?P<duration>(?:\d+(?:ms|[smhdwy]))+(?![\w.]))
  | (?P<number>(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)(?![\w.]))
  | (?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)
  | (?P<open>[({\[])
  | (?P<close>[)}\]])
  | (?P<operator>==|!=|<=|>=|=~|!~|[-+*/%^<>=,@:])
    """,
    re.VERBOSE,
)
_CLOSING = {"(": ")", "{": "}", "[": "]"}


@dataclass(frozen=True)
class Token:
    """One lexeme of an expression: its kind (a group name of ``_TOKENS``) and its text."""

    kind: str
    text: str


def tokens(expr: str) -> list[Token]:
    """The lexemes of ``expr`` without white space and comments; raises ``ValueError`` at a
    character no PromQL lexeme starts with (naming it and where it is)."""
    found: list[Token] = []
    at = 0
    while at < len(expr):
        match = _TOKENS.match(expr, at)
        if match is None or match.lastgroup is None:
            raise ValueError(f"cannot read {expr[at : at + 20]!r} at {at} of {expr!r}")
        if match.lastgroup not in ("space", "comment"):
            found.append(Token(match.lastgroup, match.group()))
        at = match.end()
    return found


def _unquote(text: str) -> str:
    """A string literal's value (escapes taken as the character they escape; enough for names)."""
    return text[1:-1] if text[:1] == "`" else re.sub(r"\\(.)", r"\1", text[1:-1])


def _skip(found: list[Token], start: int) -> int:
    """The index after the bracket that closes the one opened at ``found[start]``."""
    depth = 0
    for i in range(start, len(found)):
        if found[i].kind == "open":
            depth += 1
        elif found[i].kind == "close":
            depth -= 1
            if depth == 0:
                return i + 1
    raise ValueError(f"unbalanced {found[start].text!r}")  # not reached once _balanced has passed


def _selector_names(inside: list[Token]) -> Iterator[str]:
    """Metric names given inside ``{...}``: ``__name__="x"``, or a quoted name standing alone."""
    for i, token in enumerate(inside):
        if token.kind != "string":
            continue
        before = inside[i - 1].text if i else ","
        after = inside[i + 1].text if i + 1 < len(inside) else ","
        named = before == "=" and i >= 2 and inside[i - 2].text == "__name__"
        alone = before == "," and after == ","
        if named or alone:
            yield _unquote(token.text)


def _balanced(found: list[Token], expr: str) -> None:
    """Raise ``ValueError`` unless every bracket is closed by its own kind, in order."""
    stack: list[str] = []
    for token in found:
        if token.kind == "open":
            stack.append(_CLOSING[token.text])
        elif token.kind == "close" and (not stack or stack.pop() != token.text):
            raise ValueError(f"unbalanced {token.text!r} in {expr!r}")
    if stack:
        raise ValueError(f"{stack[-1]!r} missing at the end of {expr!r}")


def metric_names(expr: str) -> set[str]:
    """Every metric name ``expr`` reads. Raises ``ValueError`` when the expression cannot be lexed
    or its brackets do not balance."""
    found = tokens(expr)
    _balanced(found, expr)
    names: set[str] = set()
    i = 0
    while i < len(found):
        token = found[i]
        following = found[i + 1] if i + 1 < len(found) else None
        if token.kind == "open" and token.text in "{[":
            end = _skip(found, i)
            if token.text == "{":
                names.update(_selector_names(found[i + 1 : end - 1]))
            i = end
            continue
        if token.kind == "name":
            word = token.text.lower()
            if word in LABEL_LISTS:
                i = _skip(found, i + 1) if following and following.text == "(" else i + 1
                continue
            if not (word in KEYWORDS or (following is not None and following.text == "(")):
                names.add(token.text)
        i += 1
    return names


# --- the exposition ----------------------------------------------------------------------------

#: The series a metric family of each type is queried by, from its family name.
_SERIES_BY_TYPE = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "summary": ("", "_count", "_sum", "_created"),
    "info": ("_info",),
}


def exposed_names(exposition: str) -> set[str]:
    """The series names a Prometheus text exposition declares: every sample's name, and the names
    of families declared without samples yet (a labelled counter before its first increment is
    ``# TYPE x_total counter`` and nothing else), derived from their type."""
    names: set[str] = set()
    for family in text_string_to_metric_families(exposition):
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in _SERIES_BY_TYPE.get(family.type, ("",)))
    return names


def sampled_names(exposition: str) -> set[str]:
    """The series names that have at least one sample in the exposition."""
    return {s.name for family in text_string_to_metric_families(exposition) for s in family.samples}


def unknown_metrics(expressions: Mapping[str, str], exposed: Iterable[str]) -> dict[str, list[str]]:
    """For each expression (keyed by where it is) that names metrics ``exposed`` lacks, those names.

    An expression that names no metric at all is reported too (as ``["<no metric>"]``): a panel or
    rule that reads nothing is a mistake the lexer would otherwise hide.
    """
    known = set(exposed)
    missing: dict[str, list[str]] = {}
    for where, expr in expressions.items():
        names = metric_names(expr)
        if not names:
            missing[where] = ["<no metric>"]
        elif unknown := sorted(names - known):
            missing[where] = unknown
    return missing


def assert_all_exposed(expressions: Mapping[str, str], exposition: str) -> None:
    """Fail, naming each panel or rule and the metrics it reads that the exposition does not have."""
    missing = unknown_metrics(expressions, exposed_names(exposition))
    assert not missing, "metrics not in the exposition:\n" + "\n".join(
        f"  {where}: {', '.join(names)}" for where, names in sorted(missing.items())
    )
