"""edged.topics: subscription filters, publish templates, and matching per the MQTT spec."""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from edged.topics import matches, render, safe_level, validate_filter, validate_template

VALUES = {"device_id": "box-1", "route": "cam", "model": "digits", "prefix": "edged"}

# --- validate_filter --------------------------------------------------------------------


@pytest.mark.parametrize(
    "topic_filter",
    [
        "a",
        "a/b/c",
        "#",
        "+",
        "+/+",
        "a/+/c",
        "a/#",
        "+/#",
        "/a",  # a leading empty level is a level
        "a//b",
        "$SYS/#",
        "$share/workers/sensors/+/frame",
        "$share/g/#",
        "$share/g/a/b",
    ],
)
def test_valid_filters_are_returned_unchanged(topic_filter: str) -> None:
    assert validate_filter(topic_filter) == topic_filter


@pytest.mark.parametrize(
    ("topic_filter", "reason"),
    [
        ("", "the filter is empty"),
        ("a\x00b", "NUL"),
        ("a/#/b", "'#' must be a whole level and the last one"),
        ("#/a", "'#' must be a whole level and the last one"),
        ("a#", "'#' must be a whole level and the last one"),
        ("a/b#", "'#' must be a whole level and the last one"),
        ("a/##", "'#' must be a whole level and the last one"),
        ("a+", "'+' must be a whole level"),
        ("a/+b/c", "'+' must be a whole level"),
        ("a/++", "'+' must be a whole level"),
        ("$share/g", "a shared subscription is $share/GROUP/filter"),
        ("$share/g/", "a shared subscription is $share/GROUP/filter"),
        ("$share//a", "a shared subscription is $share/GROUP/filter"),
        ("$share/g+/a", "the share group name cannot hold wildcards"),
        ("$share/#/a", "the share group name cannot hold wildcards"),
        ("$share/g/a/#/b", "'#' must be a whole level and the last one"),
    ],
)
def test_invalid_filters_say_why(topic_filter: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        validate_filter(topic_filter)


# --- validate_template ------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    [
        "out",
        "{prefix}/{device_id}/predictions/{route}",
        "{prefix}/{model}/{topic}",
        "out/{topic[0]}/{topic[-1]}/{topic[12]}",
        "out/{{literal}}",
    ],
)
def test_valid_templates_are_returned_unchanged(template: str) -> None:
    assert validate_template(template) == template


@pytest.mark.parametrize(
    ("template", "reason"),
    [
        ("", "the topic is empty"),
        ("out/+", "wildcards"),
        ("out/#", "wildcards"),
        ("out/a+b", "wildcards"),
        ("out/{sensor}", "unknown placeholder {sensor}"),
        ("out/{}", "unknown placeholder {}"),
        ("out/{0}", "unknown placeholder {0}"),
        ("out/{topic[a]}", "unknown placeholder {topic[a]}"),
        ("out/{topic.x}", "unknown placeholder {topic.x}"),
        ("out/{route:>10}", "cannot carry a format spec"),
        ("out/{route!r}", "cannot carry a format spec"),
        ("out/{route", "expected '}'"),
        ("out/route}", "'}'"),
    ],
)
def test_invalid_templates_say_why(template: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        validate_template(template)


def test_unknown_placeholder_message_lists_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"known: \{device_id\}, \{model\}.*\{topic\[N\]\}"):
        validate_template("{sensor}")


# --- render -----------------------------------------------------------------------------


def test_render_fills_every_placeholder() -> None:
    topic = render(
        "{prefix}/{device_id}/{model}/{route}/{topic[1]}", VALUES, "sensors/cam-7/frame"
    )
    assert topic == "edged/box-1/digits/cam/cam-7"


def test_render_topic_keeps_the_source_levels() -> None:
    assert render("out/{topic}", VALUES, "sensors/cam-7/frame") == "out/sensors/cam-7/frame"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{topic[0]}", "a"),
        ("{topic[2]}", "c"),
        ("{topic[-1]}", "c"),
        ("{topic[-3]}", "a"),
        ("{topic[3]}", "_"),  # missing levels are '_'
        ("{topic[-4]}", "_"),
    ],
)
def test_render_topic_index(template: str, expected: str) -> None:
    assert render(template, VALUES, "a/b/c") == expected


def test_render_literal_braces() -> None:
    assert render("out/{{x}}/{route}", VALUES) == "out/{x}/cam"


@pytest.mark.parametrize(
    "source",
    ["sensors/+/frame", "sensors/#", "a/b/c/d/e/f", "evil/+/#/x", "a\x00b", "", "/", "//"],
)
def test_source_topic_cannot_inject_levels_or_wildcards_via_an_index(source: str) -> None:
    topic = render("out/{topic[1]}/{topic[-1]}/done", VALUES, source)
    levels = topic.split("/")
    assert len(levels) == 4
    assert (levels[0], levels[3]) == ("out", "done")
    assert not {"+", "#", "\x00"} & set(topic)


def test_source_topic_wildcards_are_defused_in_the_whole_topic() -> None:
    topic = render("out/{topic}", VALUES, "sensors/+/#")
    assert topic == "out/sensors/_/_"
    assert topic.count("/") == 3  # the source's levels, no more


@pytest.mark.parametrize("value", ["a/b", "+", "#", "x/+/#", "nul\x00", ""])
@pytest.mark.parametrize("name", ["device_id", "route", "model"])
def test_values_are_squeezed_into_one_safe_level(name: str, value: str) -> None:
    topic = render(f"out/{{{name}}}/done", {**VALUES, name: value}, "s/t")
    levels = topic.split("/")
    assert len(levels) == 3
    assert levels[1] == safe_level(value)
    assert not {"+", "#", "\x00"} & set(topic)


def test_a_prefix_spanning_levels_keeps_them() -> None:
    # The status, stats and errors topics live under the whole prefix, so predictions must
    # too: "site/edged" is two levels, not "site_edged".
    topic = render("{prefix}/{device_id}/predictions/{route}", {**VALUES, "prefix": "site/edged"})
    assert topic == "site/edged/box-1/predictions/cam"
    # Still no wildcards, should a prefix ever hold one.
    assert render("{prefix}/x", {**VALUES, "prefix": "a/+/#"}) == "a/_/_/x"


@pytest.mark.parametrize(
    ("value", "expected"),
    [("cam", "cam"), ("a/b", "a_b"), ("+", "_"), ("#", "_"), ("a\x00", "a_"), ("", "_")],
)
def test_safe_level(value: str, expected: str) -> None:
    assert safe_level(value) == expected


TEMPLATE_PARTS = st.sampled_from(
    ["out", "x", "", "{device_id}", "{route}", "{model}", "{prefix}", "{topic[0]}",
     "{topic[1]}", "{topic[-1]}", "{topic[-2]}", "{topic[7]}", "{{", "}}"]
)


@st.composite
def templates_without_topic(draw: st.DrawFn) -> str:
    levels = draw(st.lists(st.lists(TEMPLATE_PARTS, max_size=3).map("".join), min_size=1,
                           max_size=6))
    return "/".join(levels) or "out"


def literal_levels(template: str) -> int:
    """How many levels a template's own text (not its values) makes."""
    literal = "".join(text for text, _, _, _ in string.Formatter().parse(template))
    return literal.count("/") + 1


@given(template=templates_without_topic(), source=st.text())
@example(template="{prefix}/{topic[0]}/{topic[-1]}", source="+/#/a/b/\x00")
@example(template="{route}", source="/")
def test_property_sources_never_change_the_shape_of_a_topic(template: str, source: str) -> None:
    validate_template(template)
    topic = render(template, VALUES, source)
    assert topic.count("/") + 1 == literal_levels(template)
    assert "+" not in topic
    assert "#" not in topic


@given(source=st.text())
def test_property_topic_placeholder_never_adds_wildcards(source: str) -> None:
    topic = render("out/{topic}", VALUES, source)
    assert "+" not in topic
    assert "#" not in topic
    assert topic.count("/") == source.count("/") + 1


# --- matches ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("a/b", "a/b", True),
        ("a/b", "a/c", False),
        ("a/b", "a/b/c", False),
        ("a/b/c", "a/b", False),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/+", "a", False),  # '+' needs a level to match
        ("a/+", "a/", True),  # ... an empty one will do
        ("+/+", "/finance", True),
        ("/+", "/finance", True),
        ("+", "/finance", False),
        ("sport/tennis/+", "sport/tennis/player1", True),
        ("sport/tennis/+", "sport/tennis/player1/ranking", False),
        ("sport/#", "sport", True),  # '#' matches the parent level too
        ("sport/#", "sport/tennis/player1", True),
        ("sport/#", "sports", False),
        ("sport/tennis/#", "sport/tennis", True),
        ("#", "a/b/c", True),
        ("#", "/", True),
        ("+/tennis/#", "sport/tennis/player1", True),
        ("+/tennis/#", "sport/golf", False),
        ("A/b", "a/b", False),  # topics are case sensitive
        # Wildcards at the first level do not match '$' topics ...
        ("#", "$SYS/broker/uptime", False),
        ("+/broker/uptime", "$SYS/broker/uptime", False),
        ("+", "$SYS", False),
        # ... but a filter that names the '$' level does.
        ("$SYS/#", "$SYS/broker/uptime", True),
        ("$SYS/+/uptime", "$SYS/broker/uptime", True),
        ("a/+", "a/$x", True),  # only the first level is special
        # Shared subscriptions match as their filter does.
        ("$share/g/sensors/+/frame", "sensors/cam/frame", True),
        ("$share/g/sensors/+/frame", "sensors/cam/audio", False),
        ("$share/g/#", "anything/at/all", True),
        ("$share/g/#", "$SYS/x", False),
    ],
)
def test_matches(topic_filter: str, topic: str, expected: bool) -> None:
    assert matches(topic_filter, topic) is expected


@given(topic=st.text(alphabet="ab/$", min_size=1).filter(lambda t: "+" not in t))
def test_property_a_topic_matches_itself_as_a_filter(topic: str) -> None:
    assert matches(topic, topic)
    if not topic.startswith("$"):
        assert matches("#", topic)
