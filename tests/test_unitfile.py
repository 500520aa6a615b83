"""edged.unitfile: the sandbox read from a unit file and its drop-ins, as systemd applies
them (systemd.exec(5), systemd.unit(5))."""

from __future__ import annotations

from pathlib import Path

from edged.unitfile import parse

REPO = Path(__file__).resolve().parents[1]
SHIPPED = (REPO / "systemd" / "edged.service").read_text()


def test_the_shipped_unit() -> None:
    box = parse([("edged.service", SHIPPED)])
    assert box.dynamic_user and box.account == "edged"
    assert box.groups == ("plugdev", "apex")
    assert (box.protect_system, box.protect_home, box.private_tmp) == ("strict", "yes", True)
    assert box.config == "/etc/edged/edged.yaml"
    assert "/var/lib/edged" in box.managed and "/run/edged" in box.managed
    assert box.read_only == ("/etc/edged", "/opt/edged")


def test_what_the_sandbox_hides() -> None:
    box = parse([("edged.service", SHIPPED)])
    assert "ProtectHome" in (box.hidden("/root/model.tflite") or "")
    assert "ProtectHome" in (box.hidden("/home/pi/m.tflite") or "")
    assert "PrivateTmp" in (box.hidden("/tmp/m.tflite") or "")
    assert "PrivateTmp" in (box.hidden("/var/tmp/m.tflite") or "")
    assert box.hidden("/etc/edged/m.tflite") is None
    assert box.hidden("/rooted/m.tflite") is None  # a prefix of a name is not its folder


def test_what_the_sandbox_keeps_from_writes() -> None:
    box = parse([("edged.service", SHIPPED)])
    assert box.read_only_reason("/var/lib/edged") is None
    assert box.read_only_reason("/var/lib/private/edged") is None
    assert box.read_only_reason("/run/edged") is None
    assert "strict" in (box.read_only_reason("/var/spool/edged") or "")
    assert "ReadOnlyPaths=/etc/edged" in (box.read_only_reason("/etc/edged") or "")


def test_drop_ins_add_to_lists_and_an_empty_assignment_resets_them() -> None:
    dropin = """[Service]
SupplementaryGroups=
SupplementaryGroups=video
ReadWritePaths=-/var/spool/edged
ProtectHome=read-only
"""
    box = parse([("edged.service", SHIPPED), ("override.conf", dropin)])
    assert box.groups == ("video",)
    assert box.read_only_reason("/var/spool/edged/outbox.sqlite") is None
    assert box.hidden("/root/m.tflite") is None
    assert "read-only" in (box.read_only_reason("/home/pi") or "")


def test_dynamic_user_implies_a_private_tmp_and_static_user_keeps_its_name() -> None:
    assert parse([("a.service", "[Service]\nDynamicUser=yes\n")]).private_tmp
    box = parse([("a.service", "[Service]\nUser=pi\nExecStart=/x run -c /srv/e.yaml\n")])
    assert (box.account, box.private_tmp, box.config) == ("pi", False, "/srv/e.yaml")
    # Other sections, comments and continuation lines.
    text = "[Unit]\nUser=nobody\n[Service]\n# User=x\nExecStart=/x run \\\n  --config=/e.yaml\n"
    box = parse([("b.service", text)])
    assert (box.account, box.config) == ("root", "/e.yaml")
