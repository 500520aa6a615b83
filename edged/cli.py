"""Command line: parse arguments, call into the package, map errors to exit codes."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import structlog

from edged import __version__, devices, handshake, inputfit, logs, topics
from edged.config import DEFAULT_CONFIG_PATH, Settings, load_settings
from edged.errors import ConfigError, EdgedError, ModelLoadError, RuntimeUnavailableError
from edged.frigate import serve as frigate_serve
from edged.frigate import uploads as frigate_uploads
from edged.mqtt import Material
from edged.mqtt.check import probe_broker
from edged.routes import Route
from edged.runtime.delegates import DelegateError
from edged.server import Loaded, Server, early_door, load

EX_OK = 0
EX_FAILURE = 1
# sysexits.h codes for what a restart cannot fix; the unit's RestartPreventExitStatus names
# them, so systemd stops the unit with edged's message instead of restarting it forever.
EX_NOINPUT = 66  # a model or labels file missing, unreadable or not what it should be
EX_UNAVAILABLE = 69  # no TFLite runtime installed
EX_CONFIG = 78  # the configuration, or a file it names (password, TLS), is wrong
SANDBOX_HINT = ("edged's unit runs it as a user of its own, without /home, /root or the "
                "host's /tmp: `sudo edged check` names each file it cannot open, and the fix")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edged", description="Deadline-aware TFLite inference over MQTT."
    )
    parser.add_argument("--version", action="version", version=f"edged {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    text = ("ask a running edged to reload its config and wait until the new config serves "
            "or is refused (the unit's ExecReload)")
    sub = commands.add_parser("reload", help=text, description=text)
    sub.add_argument("--pid", type=int, required=True, help="the running edged's process id")
    sub.add_argument("--timeout", type=float, default=110.0,
                     help="seconds to wait for the outcome (default: 110, under the "
                          "unit's TimeoutStartSec)")
    for name, text in (
        ("run", "run the daemon in the foreground"),
        ("check", "validate the config, load every model once, and report"),
    ):
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument(
            "-c", "--config", type=Path, default=DEFAULT_CONFIG_PATH,
            help=f"configuration file (default: {DEFAULT_CONFIG_PATH})",
        )
        sub.add_argument(
            "--runtime", choices=["ai-edge-litert", "tflite-runtime"], default=None,
            help="use this TFLite runtime instead of the fastest installed one that "
                 "passes the probe",
        )
        if name == "check":
            sub.add_argument("--no-broker", action="store_true",
                             help="do not connect to the broker to time the way back")
            sub.add_argument("--broker", action="store_true",
                             help="check the broker only: what it announces, whether every "
                                  "route can work there, and what edged will do about it")
            sub.add_argument("--no-sandbox", action="store_true",
                             help="as root, do not open the files as the service's user "
                                  "through its unit's sandbox")
            sub.add_argument("--unit", type=Path, default=None,
                             help="the unit whose sandbox to check through (default: the "
                                  "installed edged.service and its drop-ins)")
    text = "list the accelerators, delegate libraries and TFLite runtime this box has"
    sub = commands.add_parser("devices", help=text, description=text)
    sub.add_argument("-c", "--config", type=Path, default=None,
                     help="also try the delegate libraries this configuration names")
    sub.add_argument("--json", action="store_true", help="print JSON instead of text")
    for name, text in (
        ("schema", "print the configuration's JSON Schema (for editors and validators)"),
        ("config-doc", "print the configuration reference (Markdown) with every key"),
    ):
        commands.add_parser(name, help=text, description=text)
    for name, text in (
        ("status", "print a box's state, routes, workers and outbox from its stats topic"),
        ("top", "show a box's routes, workers and outbox live, refreshed every second"),
    ):
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument(
            "-c", "--config", type=Path, default=DEFAULT_CONFIG_PATH,
            help=f"the daemon's configuration: broker, credentials, topics (default: "
                 f"{DEFAULT_CONFIG_PATH})",
        )
        sub.add_argument("--device", default=None,
                         help="the box's device_id (default: the configuration's)")
        if name == "status":
            sub.add_argument("--json", action="store_true", help="print JSON instead of text")
            sub.add_argument("--timeout", type=float, default=None,
                             help="seconds to wait for a stats snapshot (default: the "
                                  "configuration's stats_interval_s and 2)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.command == "check":
            if args.broker:
                return check_broker(args.config)
            return check(args.config, args.runtime, broker=not args.no_broker,
                         sandbox=not args.no_sandbox, unit=args.unit)
        if args.command == "devices":
            return list_devices(args.config, args.json)
        if args.command in ("schema", "config-doc"):
            return print_generated(args.command)
        if args.command in ("status", "top"):
            return watch(args)
        if args.command == "reload":
            return ask_reload(args.pid, args.timeout)
        return run(args.config, args.runtime)
    except ConfigError as exc:
        _fail(exc)
        return EX_CONFIG
    except ModelLoadError as exc:
        _fail(exc)
        # An accelerator that is not there (DelegateError) may be there after a restart.
        return EX_FAILURE if isinstance(exc, DelegateError) else EX_NOINPUT
    except RuntimeUnavailableError as exc:
        _fail(exc)
        return EX_UNAVAILABLE
    except EdgedError as exc:
        _fail(exc)
        return EX_FAILURE
    except KeyboardInterrupt:
        return 130


def _fail(exc: EdgedError) -> None:
    text = str(exc)
    if os.environ.get("INVOCATION_ID") and any(
            why in text for why in ("Permission denied", "No such file")):
        text += f"\n{SANDBOX_HINT}"  # under systemd: the sandbox may be why
    print(f"edged: {text}", file=sys.stderr)


def ask_reload(pid: int, timeout: float) -> int:
    directory = handshake.runtime_dir() or handshake.DEFAULT_RUNTIME_DIR
    try:
        outcome = handshake.ask(pid, directory, timeout)
    except handshake.ReloadFailed as exc:
        print(f"edged: {exc}", file=sys.stderr)
        return EX_FAILURE
    print(f"edged: reloaded (pid {outcome.pid})")
    return EX_OK


def run(config: Path, runtime: str | None) -> int:
    # A reload asked for while models are still loading would kill the process (HUP's
    # default action); the server installs its own handler once it is ready to act on it.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    settings = frigate_uploads.extend(load_settings(config))  # kept uploads are served too
    logs.configure(settings.logging.level, settings.logging.format)
    log = structlog.get_logger("edged")
    log.info("loading", config=str(config), version=__version__)
    door = on_loaded = None
    if settings.frigate is not None:  # Frigate's handshakes are answered as models load
        door, on_loaded = early_door(settings)
    try:
        loaded = load(settings, runtime, on_loaded)
    except BaseException:
        if door is not None:
            door.stop(0.0)
        raise
    if loaded.runtime is not None:
        log.info("TFLite runtime", runtime=loaded.backend.describe(), how=loaded.runtime.how)
    server = Server(settings, loaded, config_path=config, door=door)
    server.run()
    return EX_OK


def check(config: Path, runtime: str | None, broker: bool = True, sandbox: bool = True,
          unit: Path | None = None) -> int:
    settings = frigate_uploads.extend(load_settings(config))
    print(f"config   {config}: valid")
    loaded = load(settings, runtime)
    try:
        if loaded.runtime is not None:
            print("\n".join(loaded.runtime.lines()))
        else:
            print(f"runtime  {loaded.backend.describe()}")
        for route in settings.routes:  # what start-up would refuse: input or output mismatch
            Route.bind(route, loaded.models)
        served = frigate_serve.bind(settings, loaded.models)
        _print_report(settings, loaded)
        for entry in served:
            print(f"frigate  {entry.name}: {entry.route.model.name} ({entry.decoder}, input "
                  f"{entry.spec.describe()}), {len(entry.ids)} classes with Frigate ids, "
                  f"threshold {entry.threshold:g}"
                  + (f", model_type {entry.model_type}" if entry.model_type else ""))
        if settings.frigate is not None:
            print(f"frigate  endpoints {', '.join(settings.frigate.endpoints)}; request "
                  f"timeout {settings.frigate.request_timeout_ms} ms")
        if sandbox and not _service_view(settings, config, unit):
            return EX_CONFIG
        if broker and loaded.material is not None and not _broker_report(settings,
                                                                          loaded.material):
            return EX_FAILURE
    finally:
        if loaded.outbox is not None:
            loaded.outbox.close()
    print("ok")
    return EX_OK


def check_broker(config: Path) -> int:
    settings = load_settings(config)
    print(f"config   {config}: valid")
    if not _broker_report(settings, Material.load(settings.mqtt)):
        return EX_FAILURE
    print("ok")
    return EX_OK


def _broker_report(settings: Settings, material: Material) -> bool:
    """Print what the broker announces and what edged does about it; False when a route
    cannot work there."""
    device = topics.safe_level(settings.device_id)
    tag = f"check-{os.getpid()}"
    report = probe_broker(settings.mqtt, material, f"edged-{device}-{tag}",
                          f"{settings.mqtt.topic_prefix}/{device}/probe/{tag}",
                          publish_qos={r.name: r.publish_qos for r in settings.routes},
                          filters=[r.subscribe for r in settings.routes])
    print("\n".join(report.lines()))
    if report.fatal:
        print("edged: a route cannot work on this broker (see `error` above)", file=sys.stderr)
    return not report.fatal


def _service_view(settings: Settings, config: Path, unit: Path | None) -> bool:
    """Open every file the daemon opens as the service would; False if one fails."""
    from edged import sandbox, unitfile

    if os.geteuid() != 0:
        print("note     not root: the files were not opened as the service's user would "
              "(run edged check as root for that)")
        return True
    found = unitfile.find(unit)
    if found is None:
        print("note     no edged.service is installed: the files were opened as root only")
        return True
    if unit is None and found.config and Path(found.config).resolve() != config.resolve():
        print(f"note     {found.source} runs {found.config}, not this file: the files were "
              "opened as root only (--unit FILE opens them as that unit's user would)")
        return True
    print(f"service  {found.describe()}")
    problems = sandbox.problems(found, sandbox.needs(settings, config))
    for line in problems:
        print(f"error    {line}")
    if not problems:
        print("service  every file the config names opens as the service's user")
    return not problems


def list_devices(config: Path | None, as_json: bool) -> int:
    libraries: tuple[str, ...] = ()
    if config is not None:
        settings = load_settings(config)
        libraries = tuple(m.library for m in settings.models.values() if m.library)
    found = devices.scan(libraries=libraries)
    if as_json:
        print(json.dumps(found.as_dict(), indent=2))
    else:
        print("\n".join(found.lines()))
    return EX_OK


def watch(args: argparse.Namespace) -> int:
    from edged import console  # the daemon itself never needs it

    settings = load_settings(args.config)
    logs.configure("warning", "console")  # the report is on stdout; warnings on stderr
    if args.command == "top":
        console.top(settings, args.device)
        return EX_OK
    up = console.status(settings, args.device, args.timeout, args.json)
    return EX_OK if up else EX_FAILURE


def print_generated(command: str) -> int:
    # Imported here: the daemon itself never needs them.
    from edged.config.reference import reference_markdown
    from edged.config.schema import schema_text

    sys.stdout.write(schema_text() if command == "schema" else reference_markdown())
    return EX_OK


def _print_report(settings: Settings, loaded: Loaded) -> None:
    mqtt = settings.mqtt
    print(f"device   {settings.device_id}")
    print(f"broker   {mqtt.host}:{mqtt.port} (MQTT {mqtt.protocol}, "
          f"{'TLS' if mqtt.tls else 'plain TCP'}), topics under {mqtt.topic_prefix}/")
    for name, model in loaded.models.items():
        cfg = model.config
        print(f"model    {name}: {cfg.path} ({cfg.path.stat().st_size} bytes)")
        print(f"           input  {model.input.describe()}")
        for out in model.outputs:
            print(f"           output {out.describe()}")
        labels = f", {len(model.labels)} labels" if model.labels else ""
        runs = (f"inline on the MQTT thread (invoke {model.typical_ms:.3f} ms)" if model.inline
                else f"{cfg.workers} worker(s)")
        print(f"           {runs}, {cfg.num_threads} thread(s) each, "
              f"postprocess {cfg.postprocess}{labels}; warm-up invoke {model.warmup_ms:.2f} ms, "
              f"then {model.typical_ms:.3f} ms")
        if model.decoder:
            print(f"           decoder {cfg.postprocess}: {model.decoder}")
        print(f"           backend {model.engines.describe()}")
        for backend, why in model.startup_failures.items():
            print(f"warning  {name}: {backend} unavailable, starting on the fallback: {why}")
    for route in settings.routes:
        stages = [route.model] + [
            link.model if link.window is None else
            f"{link.model} [window {link.window.size}, hop {link.window.hop or link.window.size}]"
            for link in route.chain_links]
        print(f"route    {route.name}: {route.subscribe} -> {' -> '.join(stages)} -> "
              f"{route.publish} (input {route.input.format}, deadline {route.deadline_ms} ms)")
        for line in inputfit.warnings(route, loaded.models[route.model]):
            print(f"warning  {line}")
    if not settings.routes:
        print("warning  no routes: edged would subscribe to nothing")
