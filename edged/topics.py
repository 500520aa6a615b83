"""MQTT topic filters and publish-topic templates (pure functions).

A source topic must never be able to inject wildcards or extra levels into a topic edged
publishes to, so every value substituted into a template is made into one safe level.
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Mapping

SHARE_PREFIX = "$share/"
_PLACEHOLDER_FIELDS = {"device_id", "route", "model", "prefix", "topic"}
_TOPIC_INDEX = re.compile(r"^topic\[(-?\d+)\]$")
_UNSAFE_LEVEL = re.compile(r"[+#/\x00]")
MAX_TOPIC_BYTES = 65535


def validate_filter(topic_filter: str) -> str:
    """Check an MQTT subscription filter; ``$share/GROUP/filter`` is accepted as it is.

    Raises ValueError with the reason.
    """
    if not topic_filter:
        raise ValueError("the filter is empty")
    if "\x00" in topic_filter:
        raise ValueError("the filter contains a NUL character")
    body = topic_filter
    if topic_filter.startswith(SHARE_PREFIX):
        parts = topic_filter.split("/", 2)
        if len(parts) < 3 or not parts[1] or not parts[2]:
            raise ValueError("a shared subscription is $share/GROUP/filter")
        if "+" in parts[1] or "#" in parts[1]:
            raise ValueError("the share group name cannot hold wildcards")
        body = parts[2]
    levels = body.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            raise ValueError("'#' must be a whole level and the last one")
        if "+" in level and level != "+":
            raise ValueError("'+' must be a whole level")
    return topic_filter


def validate_template(template: str) -> str:
    """Check a publish-topic template: known placeholders only, no wildcards."""
    if not template:
        raise ValueError("the topic is empty")
    if "+" in template or "#" in template:
        raise ValueError("a publish topic cannot contain the wildcards '+' or '#'")
    for _, name, spec, conv in string.Formatter().parse(template):
        if name is None:
            continue
        if spec or conv:
            raise ValueError(f"placeholder {{{name}}} cannot carry a format spec")
        if name not in _PLACEHOLDER_FIELDS and not _TOPIC_INDEX.match(name):
            known = ", ".join(sorted(f"{{{n}}}" for n in _PLACEHOLDER_FIELDS))
            raise ValueError(f"unknown placeholder {{{name}}}; known: {known}, {{topic[N]}}")
    return template


def validate_prefix(value: str) -> str:
    """A fixed topic prefix: levels allowed, no wildcards or placeholders; no outer '/'."""
    validate_template(value)
    if "{" in value:
        raise ValueError("a topic prefix cannot contain placeholders")
    return value.strip("/")


def safe_level(value: str) -> str:
    """Make ``value`` one harmless topic level: wildcards, separators and NUL become ``_``."""
    return _UNSAFE_LEVEL.sub("_", value) or "_"


@functools.lru_cache(maxsize=1024)
def _parsed(template: str) -> tuple[tuple[str, str | None], ...]:
    return tuple((literal, name) for literal, name, _, _ in string.Formatter().parse(template))


def uses_source(template: str) -> bool:
    """Whether the template's result depends on the source topic."""
    return any(name is not None and name.startswith("topic") for _, name in _parsed(template))


def render(template: str, values: Mapping[str, str], source_topic: str = "") -> str:
    """Fill a validated template.

    ``{topic}`` is the whole source topic with its levels kept but every wildcard made
    harmless; ``{topic[N]}`` is one level (negative N counts from the end, missing levels
    are ``_``); ``{prefix}`` keeps its levels too, as the status and errors topics do;
    every other value is squeezed into a single level.
    """
    levels = source_topic.split("/")
    out: list[str] = []
    for literal, name in _parsed(template):
        out.append(literal)
        if name is None:
            continue
        if name in ("topic", "prefix"):
            parts = levels if name == "topic" else values[name].split("/")
            out.append("/".join(safe_level(level) for level in parts))
            continue
        match = _TOPIC_INDEX.match(name)
        if match:
            index = int(match.group(1))
            level = levels[index] if -len(levels) <= index < len(levels) else ""
            out.append(safe_level(level))
            continue
        out.append(safe_level(values[name]))
    return "".join(out)


def matches(topic_filter: str, topic: str) -> bool:
    """Whether ``topic`` matches the subscription filter (``$share/GROUP/`` ignored).

    As the MQTT spec says, wildcards at the first level do not match topics that start
    with ``$``.
    """
    if topic_filter.startswith(SHARE_PREFIX):
        topic_filter = topic_filter.split("/", 2)[2]
    pattern = topic_filter.split("/")
    levels = topic.split("/")
    if topic.startswith("$") and pattern[0] in ("+", "#"):
        return False
    for i, part in enumerate(pattern):
        if part == "#":
            return True
        if i >= len(levels) or (part != "+" and part != levels[i]):
            return False
    return len(levels) == len(pattern)
