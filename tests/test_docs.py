"""The manual and the README, checked like code.

- The docs tree builds with MkDocs in strict mode: a link to a missing page or anchor fails.
- The README's own links point at files that exist and at anchors the built site has.
- The README's first-config walkthrough runs command for command, as a newcomer would type
  it, against a real mosquitto: the commands are read from the README's code blocks (never
  copied here), and what the README shows as their output is what they print.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from tests.support.broker import Broker
from tests.support.probe import Probe
from tests.support.tools import missing, require_tool

REPO = Path(__file__).resolve().parent.parent
WALKTHROUGH = "## A first config, from frame to result"
README_PORT = "1883"
VOLATILE_KEYS = {"received_at", "timings_ms"}  # differ on every run


def build_site(out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet",
         "--config-file", str(REPO / "mkdocs.yml"), "--site-dir", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    try:
        import mkdocs  # noqa: F401
    except ImportError:
        missing("mkdocs is not installed (the test extra: scripts/setup.sh installs it)")
    out = tmp_path_factory.mktemp("site")
    done = build_site(out)
    assert done.returncode == 0, f"mkdocs build --strict failed:\n{done.stdout}{done.stderr}"
    return out


def test_the_docs_build_in_strict_mode(site: Path) -> None:
    pages = {p.stem for p in (REPO / "docs").glob("*.md")}
    for page in pages - {"index"}:
        assert (site / page / "index.html").is_file(), page


def test_a_broken_anchor_fails_the_build(tmp_path: Path) -> None:
    """Strict mode is what makes a broken link fail CI: prove it on a copy."""
    copy = tmp_path / "repo"
    copy.mkdir()
    (copy / "mkdocs.yml").write_text((REPO / "mkdocs.yml").read_text())
    docs = copy / "docs"
    shutil.copytree(REPO / "docs", docs)
    with (docs / "index.md").open("a") as index:
        index.write("\nSee [a section that is not there](inputs.md#no-such-section).\n")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir",
         str(tmp_path / "site")], cwd=copy, capture_output=True, text=True, timeout=300,
        check=False)
    assert done.returncode != 0
    warnings = [line for line in done.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 1 and "#no-such-section" in warnings[0], done.stderr


def test_the_readmes_links_lead_somewhere(site: Path) -> None:
    text = (REPO / "README.md").read_text()
    links = re.findall(r"\]\(([^)\s]+)\)", text)
    assert links
    for link in links:
        if link.startswith(("http://", "https://")):
            continue
        path, _, anchor = link.partition("#")
        assert (REPO / path).exists(), f"README links to {path}, which does not exist"
        if anchor:
            assert path.startswith("docs/") and path.endswith(".md"), link
            page = Path(path).relative_to("docs").with_suffix("")
            html = (site / page / "index.html").read_text()
            assert f'id="{anchor}"' in html, f"README links to {link}: no such anchor"


# The walkthrough: the README's blocks, in order


@dataclass
class Block:
    lang: str
    text: str


def walkthrough_blocks() -> list[Block]:
    readme = (REPO / "README.md").read_text()
    assert WALKTHROUGH in readme, f"the README has no section {WALKTHROUGH!r}"
    section = readme.split(WALKTHROUGH, 1)[1].split("\n## ", 1)[0]
    return [Block(lang, body) for lang, body in
            re.findall(r"^```(\w*)\n(.*?)^```", section, flags=re.M | re.S)]


@dataclass
class Walk:
    """A shell session in a fresh folder that looks like the repository to the commands."""

    port: int
    cwd: Path
    env: dict[str, str]
    background: list[subprocess.Popen[bytes]] = field(default_factory=list)
    sub_output: Path | None = None
    device_id: str = ""

    def command(self, line: str) -> str:
        line = line.replace(README_PORT, str(self.port))
        return line.replace(".venv/bin/", f"{Path(sys.executable).parent}/")

    def run(self, line: str) -> str:
        done = subprocess.run(["bash", "-c", self.command(line)], cwd=self.cwd, env=self.env,
                              capture_output=True, text=True, timeout=120, check=False)
        assert done.returncode == 0, (
            f"README command failed ({done.returncode}): {line}\n{done.stdout}{done.stderr}")
        return done.stdout

    def start(self, line: str) -> None:
        command = self.command(line.removesuffix("&").strip())
        program = command.split()[0]
        out = self.cwd / f"background-{len(self.background)}.out"
        with out.open("wb") as sink:
            self.background.append(subprocess.Popen(
                ["bash", "-c", f"exec {command}"], cwd=self.cwd, env=self.env, stdout=sink,
                stderr=subprocess.STDOUT, start_new_session=True))
        if program.endswith("/edged"):
            self._wait_online()
        elif program == "mosquitto_sub":
            self.sub_output = out
            self._wait_subscribed(command, out)
        else:
            raise AssertionError(f"the test does not know how to wait for {line!r}")

    def _wait_online(self) -> None:
        probe = Probe(self.port)
        try:
            probe.subscribe(f"edged/{self.device_id}/status")
            end = time.monotonic() + 60
            while time.monotonic() < end:
                got = probe.next(timeout=max(0.1, end - time.monotonic()))
                if got.payload == b"online":
                    return
            raise AssertionError("edged did not come online within 60 s")
        finally:
            probe.close()

    def _wait_subscribed(self, command: str, out: Path) -> None:
        """Publish a marker on a topic the subscriber's filters match until it prints it."""
        topics = [t.strip("'\"") for t in re.findall(r"-t (\S+)", command)]
        plain = [t for t in topics if "+" not in t and "#" not in t]
        assert plain, f"no plain topic to probe the subscriber with: {command}"
        marker = f"readiness-{uuid.uuid4().hex}".encode()
        probe = Probe(self.port)
        try:
            end = time.monotonic() + 30
            while marker not in out.read_bytes():
                assert time.monotonic() < end, f"{command} printed nothing in 30 s"
                probe.publish(plain[0], marker, qos=0)
                time.sleep(0.3)
        finally:
            probe.close()

    def subscriber_lines(self) -> list[tuple[str, dict[str, object]]]:
        assert self.sub_output is not None
        lines = []
        for line in self.sub_output.read_text(errors="replace").splitlines():
            topic, _, payload = line.partition(" ")
            if payload.startswith("{"):
                lines.append((topic, json.loads(payload)))
        return lines

    def stop(self) -> None:
        for proc in reversed(self.background):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def like(expected: object, actual: object) -> bool:
    """What the README shows matches what came: every key it shows, with its value (objects
    may carry more keys; timestamps and timings differ on every run)."""
    if isinstance(expected, dict):
        return isinstance(actual, dict) and all(
            key in actual and (key in VOLATILE_KEYS or like(value, actual[key]))
            for key, value in expected.items())
    if isinstance(expected, list):
        return (isinstance(actual, list) and len(expected) == len(actual)
                and all(like(e, a) for e, a in zip(expected, actual, strict=True)))
    return expected == actual


def same_table_row(expected: str, actual: str) -> bool:
    """A row of `edged status`: latencies (decimals) differ on every run, counts do not."""
    want, got = expected.split(), actual.split()
    return len(want) == len(got) and all(
        re.fullmatch(r"\d+\.\d+", w) is not None or w == g for w, g in zip(want, got, strict=True))


@pytest.fixture
def walk(tmp_path: Path) -> Iterator[Walk]:
    for tool in ("mosquitto_sub", "mosquitto_pub"):
        require_tool(tool, "mosquitto-clients")
    (tmp_path / "broker").mkdir()
    broker = Broker(tmp_path / "broker")
    broker.start()
    cwd = tmp_path / "clone"
    cwd.mkdir()
    for name in ("models", "docs"):  # what the walkthrough reads from the repository
        (cwd / name).symlink_to(REPO / name)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    session = Walk(broker.port, cwd, env)
    try:
        yield session
    finally:
        session.stop()
        broker.stop()


@pytest.mark.integration
def test_the_readmes_first_config_runs_command_for_command(walk: Walk) -> None:
    blocks = walkthrough_blocks()
    configs = [b for b in blocks if b.lang == "yaml"]
    assert len(configs) == 1 and configs[0].text.startswith("# "), \
        "the walkthrough's config block names its file on its first line"
    name = configs[0].text.split("\n", 1)[0][2:].strip()
    config_text = configs[0].text.replace(README_PORT, str(walk.port))
    walk.device_id = yaml.safe_load(config_text)["device_id"]
    (walk.cwd / name).write_text(config_text)

    ran = 0
    last_output = ""
    for block in blocks:
        if block.lang == "sh":
            for line in block.text.splitlines():
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                ran += 1
                if line.rstrip().endswith("&"):
                    walk.start(line.rstrip())
                else:
                    last_output = walk.run(line)
        elif block.lang == "text":
            shown = [line for line in block.text.splitlines() if line.strip()]
            if all(re.match(r"\S+ \{", line) for line in shown):
                check_subscriber_output(walk, shown)
            else:
                check_command_output(last_output, shown)
    assert ran >= 6, "the walkthrough lost its commands"


def check_subscriber_output(walk: Walk, shown: list[str]) -> None:
    expected = [(line.split(" ", 1)[0], json.loads(line.split(" ", 1)[1])) for line in shown]
    end = time.monotonic() + 60
    while True:
        got = walk.subscriber_lines()
        if all(any(topic == t and like(body, b) for t, b in got) for topic, body in expected):
            return
        if time.monotonic() > end:
            raise AssertionError(
                "mosquitto_sub did not print what the README shows:\n"
                + "\n".join(shown) + "\n-- it printed:\n"
                + "\n".join(f"{t} {json.dumps(b)}" for t, b in got))
        time.sleep(0.2)


def check_command_output(output: str, shown: list[str]) -> None:
    lines = output.splitlines()
    for want in shown:
        assert any(same_table_row(want, line) for line in lines), (
            f"the README shows {want!r}; the command printed:\n{output}")


# Troubleshooting: every message on the page is one edged prints

NOT_EDGEDS = ("status=", "Failed to set up credentials", "systemctl ")  # systemd's own
REASONS = {"bad_input", "expired", "deadline", "queue_full", "model_error", "gap", "shutdown",
           "internal_error", "superseded"}
MIN_CONSTANT = 12  # characters of a string literal that must match, so "{a}: {b}" does not


def edged_messages() -> list[tuple[re.Pattern[str], str]]:
    """Every string literal in edged's code as a pattern (an f-string's fields match any
    text), and as text (its fields as NUL)."""
    found: list[tuple[re.Pattern[str], str]] = []
    for path in sorted((REPO / "edged").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.JoinedStr):
                parts = [re.escape(str(v.value)) if isinstance(v, ast.Constant) else ".+?"
                         for v in node.values]
                text = "".join(str(v.value) if isinstance(v, ast.Constant) else "\0"
                               for v in node.values)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                parts, text = [re.escape(node.value)], node.value
            else:
                continue
            if len(text) - text.count("\0") >= MIN_CONSTANT:
                found.append((re.compile("".join(parts), re.S), text))
    return found


def edged_makes(span: str, messages: list[tuple[re.Pattern[str], str]]) -> bool:
    """Whether some literal makes ``span``; a span cut short with "..." need only match
    the literal's text piece by piece."""
    if any(pattern.search(span.replace("...", "")) for pattern, _ in messages):
        return True
    pieces = [p.strip() for p in span.split("...") if len(p.strip()) >= MIN_CONSTANT]
    return "..." in span and bool(pieces) and all(
        any(piece in text for _, text in messages) for piece in pieces)


def test_every_troubleshooting_message_is_one_edged_prints() -> None:
    """The page quotes messages as printed (with example values): each must still be one
    that edged's code makes, or the page has drifted from the code."""
    messages = edged_messages()
    page = (REPO / "docs" / "troubleshooting.md").read_text()
    headings = re.findall(r"^### (.+)$", page, flags=re.M)
    assert len(headings) >= 20
    checked, stale = 0, []
    for heading in headings:
        for span in re.findall(r"`([^`]+)`", heading):
            if span in REASONS or span.startswith(NOT_EDGEDS):
                continue
            if not edged_makes(span, messages):
                stale.append(span)
            checked += 1
    assert not stale, ("docs/troubleshooting.md quotes messages that no string in edged's "
                       "code makes (update the page):\n" + "\n".join(stale))
    assert checked >= 20
