"""Delegates, fallback and recovery, against real interpreters and the C test delegates in
tests/delegates/ (built with ``cc``): no accelerator is attached, so these stand in for one.

- passthrough: accepts its options, claims no node: outputs must equal the CPU's;
- null: its create returns NULL, as libedgetpu does with no Edge TPU;
- failing: claims every node with a kernel whose Invoke errors, hangs or aborts, while its
  ``flag`` file exists (so a test can make the device "come back").
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edged.config import ModelConfig
from edged.errors import ModelExecutionError, ModelLoadError
from edged.runtime import LoadedModel, Session, load_model, select_backend
from edged.runtime.delegates import DelegateError
from edged.runtime.edgetpu import FlatbufferError, compiled_for_edgetpu, custom_ops
from tests.support.broker import Broker
from tests.support.daemon import MODELS, Edged, digits_config
from tests.support.flatbuf import with_custom_op
from tests.support.probe import Probe

pytestmark = pytest.mark.legacy  # every test here also passes under tflite-runtime 2.14
DIGITS = MODELS / "digits_int8.tflite"


def config(**values: Any) -> ModelConfig:
    base: dict[str, Any] = {"path": DIGITS, "labels": MODELS / "digits.labels"}
    base.update(values)
    return ModelConfig(**base)


def images(n: int = 40) -> list[np.ndarray]:
    data = np.load(MODELS / "digits_holdout.npz")["images"][:n]
    return [np.rint(i * 255).astype(np.uint8).reshape(1, 8, 8, 1) for i in data]


def cpu_outputs(tensors: list[np.ndarray]) -> list[np.ndarray]:
    interpreter = select_backend().interpreter_class(model_path=str(DIGITS))
    interpreter.allocate_tensors()
    out = []
    for t in tensors:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], t)
        interpreter.invoke()
        out.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))
    return out


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "condition not met in time"
        time.sleep(0.02)


@pytest.fixture
def sessions() -> Iterator[list[Session]]:
    made: list[Session] = []
    yield made
    for s in made:
        s.close()


def session(made: list[Session], model: LoadedModel, worker: int | None = None) -> Session:
    s = Session(model, worker)
    made.append(s)
    return s


# --- configuration ---------------------------------------------------------------------

@pytest.mark.parametrize("values,message", [
    ({"devices": ["usb:0", "usb:1"]}, "devices lists 2 device(s) for 1 worker(s)"),
    ({"device": "usb:zero"}, "device 'usb:zero': use usb, usb:N, pci, pci:N"),
    ({"delegate": "external"}, "delegate external needs library"),
    ({"delegate": "gpu", "device": "usb"}, "device applies to the Edge TPU"),
    ({"delegate": "cpu", "fallback_model": "x.tflite"}, "delegate cpu takes no"),
    ({"device": "usb", "options": {"device": "pci"}}, "give the Edge TPU device once"),
    ({"retry_min_s": 10, "retry_max_s": 1}, "retry_min_s is over retry_max_s"),
])
def test_inconsistent_delegate_settings_are_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        config(**values)


def test_paths_resolve_against_the_config_folder_but_library_names_do_not(tmp_path: Path) -> None:
    from edged.config import Settings

    settings = Settings(models={
        "a": {"path": "m.tflite", "fallback_model": "cpu/m.tflite", "delegate": "external",
              "library": "lib/libd.so", "options": {"n": 2, "fast": True}},
        "b": {"path": "m.tflite", "delegate": "edgetpu", "library": "libedgetpu.so.1"},
    }).resolve_paths(tmp_path)
    a, b = settings.models["a"], settings.models["b"]
    assert a.fallback_model == tmp_path / "cpu" / "m.tflite"
    assert a.library == str(tmp_path / "lib" / "libd.so")
    assert b.library == "libedgetpu.so.1"  # for the dynamic loader to find
    assert a.options == {"n": "2", "fast": "true"}


# --- a delegate that works ---------------------------------------------------------------

def test_passthrough_delegate_gives_the_cpu_outputs_and_gets_its_options(
    delegate_libs: dict[str, Path], tmp_path: Path, sessions: list[Session]
) -> None:
    record = tmp_path / "options.txt"
    lib = str(delegate_libs["passthrough"])
    cfg = config(delegate="external", library=lib, options={"record": str(record), "x_n": 4})
    model = load_model("digits", cfg, select_backend())
    s = session(sessions, model)
    tensors = images()
    for got, want in zip([s.run(t)[0] for t in tensors], cpu_outputs(tensors), strict=True):
        np.testing.assert_array_equal(got, want)
    assert s.backend_name == f"external:{lib}"
    assert not s.on_fallback and s.fallback_events == 0
    assert f"record={record}" in record.read_text() and "x_n=4" in record.read_text()
    assert s.snapshot()["invoke_ms"][f"external:{lib}"]["count"] == len(tensors)


def test_a_worker_on_an_accelerator_is_pipelined_and_loses_nothing_on_stop(
    delegate_libs: dict[str, Path],
) -> None:
    from edged.config import RouteConfig
    from edged.pipeline import Pipeline
    from edged.responder import Responder
    from edged.routes import Route
    from edged.stats import Stats
    from edged.types import Inbound
    from tests.support.fakes import FakeTransport

    lib = str(delegate_libs["passthrough"])
    model = load_model("digits", config(delegate="external", library=lib), select_backend())
    assert model.accelerated and not model.inline
    transport, stats = FakeTransport(), Stats()
    route = Route.bind(RouteConfig(name="cam", subscribe="cam/+", model="digits",
                                   deadline_ms=60_000, queue_size=64), {"digits": model})
    pipeline = Pipeline([route], Responder(transport, "box", "edged", stats), transport, stats)
    (worker,) = pipeline.models["digits"].workers
    assert worker.runner.pipelined
    pipeline.start()
    tensors = images(60)
    for i, t in enumerate(tensors):
        pipeline.submit(Inbound("cam/1", t.tobytes(), 1, time.time(), time.monotonic(),
                                "reply", str(i).encode()))
    pipeline.stop(10.0)  # returns once every invoked job is finished too
    answers = {m.correlation_data: json.loads(m.payload) for m in transport.published}
    want = [str(int(np.argmax(o))) for o in cpu_outputs(tensors)]
    assert [answers[str(i).encode()]["result"]["label"] for i in range(60)] == want
    assert not worker.busy


def test_edgetpu_devices_are_dealt_to_workers(
    delegate_libs: dict[str, Path], tmp_path: Path, sessions: list[Session]
) -> None:
    # The passthrough library stands in for libedgetpu: what matters is the device option.
    record = tmp_path / "options.txt"
    cfg = config(delegate="edgetpu", library=str(delegate_libs["passthrough"]), workers=2,
                 devices=["usb:0", "usb:1"], options={"record": str(record)})
    model = load_model("digits", cfg, select_backend())
    names = [session(sessions, model).backend_name for _ in range(2)]
    assert names == ["edgetpu:usb:0", "edgetpu:usb:1"]
    seen = record.read_text().splitlines()
    assert "device=usb:0" in seen and "device=usb:1" in seen


def test_process_isolation_gives_the_same_outputs(
    delegate_libs: dict[str, Path], sessions: list[Session]
) -> None:
    cfg = config(delegate="external", library=str(delegate_libs["passthrough"]),
                 isolation="process")
    s = session(sessions, load_model("digits", cfg, select_backend()))
    tensors = images(20)
    for got, want in zip([s.run(t)[0] for t in tensors], cpu_outputs(tensors), strict=True):
        np.testing.assert_array_equal(got, want)
    assert s.snapshot()["isolation"] == "process"


# --- a delegate that does not load ----------------------------------------------------

def test_a_null_delegate_without_fallback_names_library_and_options(
    delegate_libs: dict[str, Path]
) -> None:
    lib = str(delegate_libs["null"])
    cfg = config(delegate="external", library=lib, options={"x_speed": "max"}, fallback=False)
    with pytest.raises(DelegateError) as err:
        load_model("digits", cfg, select_backend())
    text = str(err.value)
    assert lib in text and "x_speed=max" in text
    assert "returned NULL" in text and "fallback is off" in text


def test_a_refused_option_is_reported_and_the_cpu_takes_over(
    delegate_libs: dict[str, Path], sessions: list[Session]
) -> None:
    cfg = config(delegate="external", library=str(delegate_libs["passthrough"]),
                 options={"bogus": "1"})
    model = load_model("digits", cfg, select_backend())
    (why,) = model.startup_failures.values()
    assert "unknown option 'bogus'" in why and "bogus=1" in why
    s = session(sessions, model)
    assert s.backend_name == "cpu-fallback" and s.fallback_events == 1
    tensors = images(10)
    for got, want in zip([s.run(t)[0] for t in tensors], cpu_outputs(tensors), strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_missing_library_says_it_cannot_be_opened(tmp_path: Path) -> None:
    cfg = config(delegate="gpu", library=str(tmp_path / "libnothere.so"), fallback=False)
    with pytest.raises(DelegateError, match=r"cannot be opened.*libnothere\.so"):
        load_model("digits", cfg, select_backend())


def test_retries_of_a_missing_accelerator_back_off(
    delegate_libs: dict[str, Path], sessions: list[Session]
) -> None:
    cfg = config(delegate="external", library=str(delegate_libs["null"]),
                 retry_min_s=0.05, retry_max_s=0.2)
    s = session(sessions, load_model("digits", cfg, select_backend()))
    wait_for(lambda: s.health.retries_failed >= 4)
    assert s.health.retry_delay_s == pytest.approx(0.2)  # doubled, then capped
    assert "returned NULL" in (s.snapshot()["last_retry_error"] or "")
    assert s.run(images(1)[0])[0].shape == (1, 10)  # the fallback serves meanwhile


# --- a delegate that fails while serving ------------------------------------------------

def failing_model(lib: Path, flag: Path, **values: Any) -> LoadedModel:
    """Load while the device is "healthy" (no flag): the delegate then claims nothing."""
    options = {"flag": str(flag), **values.pop("options", {})}
    cfg = config(delegate="external", library=str(lib), options=options, retry_min_s=0.05,
                 retry_max_s=0.1, **values)
    return load_model("digits", cfg, select_backend())


def test_an_invoke_error_moves_the_worker_to_the_fallback_and_it_comes_back(
    delegate_libs: dict[str, Path], tmp_path: Path, sessions: list[Session]
) -> None:
    flag = tmp_path / "broken"
    model = failing_model(delegate_libs["failing"], flag, options={"action": "error"})
    flag.touch()  # the device breaks: the session's own delegate now claims every node
    s = session(sessions, model)
    primary = s.backend_name
    tensors = images(5)
    with pytest.raises(ModelExecutionError, match="device error"):
        s.run(tensors[0])
    assert s.backend_name == "cpu-fallback" and s.fallback_events == 1
    want = cpu_outputs(tensors)
    for t, w in zip(tensors, want, strict=True):  # nothing else is lost
        np.testing.assert_array_equal(s.run(t)[0], w)
    flag.unlink()  # the device is back: the next retry passes its warm-up
    wait_for(lambda: s._recovered is not None)
    np.testing.assert_array_equal(s.run(tensors[0])[0], want[0])
    assert s.backend_name == primary
    events = [e["kind"] for e in s.snapshot()["events"]]
    assert events == ["fallback", "recovered"]


def test_an_invoke_over_the_watchdog_bound_fails_over(
    delegate_libs: dict[str, Path], tmp_path: Path, sessions: list[Session]
) -> None:
    flag = tmp_path / "broken"
    # "slow" returns success after 300 ms: only the watchdog can call it a failure.
    model = failing_model(delegate_libs["failing"], flag, invoke_timeout_ms=100,
                          options={"action": "slow", "hang_ms": "300"})
    flag.touch()
    s = session(sessions, model)
    with pytest.raises(ModelExecutionError, match=r"over invoke_timeout_ms of 100"):
        s.run(images(1)[0])
    assert s.backend_name == "cpu-fallback"
    np.testing.assert_array_equal(s.run(images(1)[0])[0], cpu_outputs(images(1))[0])


def test_process_isolation_survives_an_abort_in_the_delegate(
    delegate_libs: dict[str, Path], tmp_path: Path, sessions: list[Session]
) -> None:
    flag = tmp_path / "broken"
    model = failing_model(delegate_libs["failing"], flag, isolation="process",
                          options={"action": "abort"})
    flag.touch()
    s = session(sessions, model)
    with pytest.raises(ModelExecutionError, match="SIGABRT"):
        s.run(images(1)[0])  # in-thread, this abort() would have ended the test run
    assert s.backend_name == "cpu-fallback"
    flag.unlink()
    wait_for(lambda: s._recovered is not None)
    s.run(images(1)[0])
    assert s.backend_name.startswith("external:") and s.health.recoveries == 1


def test_process_isolation_kills_a_hung_invoke(
    delegate_libs: dict[str, Path], tmp_path: Path, sessions: list[Session]
) -> None:
    flag = tmp_path / "broken"
    model = failing_model(delegate_libs["failing"], flag, isolation="process",
                          invoke_timeout_ms=200, options={"action": "hang", "hang_ms": "60000"})
    flag.touch()
    s = session(sessions, model)
    started = time.monotonic()
    with pytest.raises(ModelExecutionError, match="no answer within 200 ms; child process killed"):
        s.run(images(1)[0])
    assert time.monotonic() - started < 5
    np.testing.assert_array_equal(s.run(images(1)[0])[0], cpu_outputs(images(1))[0])


def test_no_fallback_means_model_errors_until_the_accelerator_returns(
    delegate_libs: dict[str, Path], tmp_path: Path, sessions: list[Session]
) -> None:
    flag = tmp_path / "broken"
    model = failing_model(delegate_libs["failing"], flag, fallback=False)
    flag.touch()
    s = session(sessions, model)
    for _ in range(2):
        with pytest.raises(ModelExecutionError):
            s.run(images(1)[0])
    assert s.backend_name == "none"


# --- a model compiled for the Edge TPU --------------------------------------------------

@pytest.fixture(scope="module")
def tpu_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return with_custom_op(DIGITS, tmp_path_factory.mktemp("tpu") / "digits_edgetpu.tflite")


def test_the_edgetpu_op_is_found_without_running_the_model(tpu_model: Path) -> None:
    assert custom_ops(tpu_model) == {"edgetpu-custom-op"}
    assert compiled_for_edgetpu(tpu_model) and not compiled_for_edgetpu(DIGITS)
    # The model really is unrunnable on the CPU, as a compiled one is.
    interpreter = select_backend().interpreter_class(model_path=str(tpu_model))
    with pytest.raises(RuntimeError, match="edgetpu-custom-op"):
        interpreter.allocate_tensors()


def test_a_truncated_model_is_refused_by_the_reader(tmp_path: Path) -> None:
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(DIGITS.read_bytes()[:64])
    with pytest.raises(FlatbufferError):
        custom_ops(cut)


def test_a_tpu_model_with_no_tpu_and_no_fallback_says_what_to_check(tpu_model: Path) -> None:
    with pytest.raises(DelegateError) as err:
        load_model("digits", config(path=tpu_model, device="usb:1"), select_backend())
    text = str(err.value)
    for needed in ("compiled for the Edge TPU", "device 'usb:1'", "libedgetpu.so.1",
                   "/dev/apex_N", "1a6e:089a", "18d1:9302", "fallback_model"):
        assert needed in text
    assert "unresolved custom op" not in text  # it was never run


def test_a_tpu_model_serves_from_its_fallback_model(
    tpu_model: Path, sessions: list[Session]
) -> None:
    model = load_model("digits", config(path=tpu_model, fallback_model=DIGITS),
                       select_backend())
    assert set(model.startup_failures) == {"edgetpu:any"}
    s = session(sessions, model)
    tensors = images(10)
    for got, want in zip([s.run(t)[0] for t in tensors], cpu_outputs(tensors), strict=True):
        np.testing.assert_array_equal(got, want)
    assert s.backend_name == "cpu-fallback"


def test_a_tpu_model_cannot_be_forced_onto_the_cpu(tpu_model: Path) -> None:
    with pytest.raises(ModelLoadError, match="compiled for the Edge TPU"):
        load_model("digits", config(path=tpu_model, delegate="cpu"), select_backend())


def test_a_fallback_with_other_tensors_is_refused(delegate_libs: dict[str, Path]) -> None:
    cfg = config(delegate="external", library=str(delegate_libs["passthrough"]),
                 fallback_model=MODELS / "vibration_int8.tflite", labels=None)
    with pytest.raises(ModelLoadError, match=r"fallback cannot stand in.*shape"):
        load_model("digits", cfg, select_backend())


# --- end to end: the real daemon, a real mosquitto -------------------------------------

STATUS, STATS = "edged/test-box/status", "edged/test-box/stats"


def start_failing_daemon(tmp_path: Path, broker: Broker, probe: Probe, daemons: list[Edged],
                         lib: Path, flag: Path, **model: Any) -> Edged:
    config = digits_config(broker.port)
    config["models"]["digits"].update(
        delegate="external", library=str(lib), retry_min_s=0.2, retry_max_s=0.4,
        options={"flag": str(flag), **model.pop("options", {})}, **model)
    config["stats_interval_s"] = 0.3
    probe.subscribe(STATUS, STATS, "replies/e2e")
    edged = Edged(tmp_path, config)
    daemons.append(edged)
    edged.start()
    end = time.monotonic() + 30
    while probe.next(timeout=30, topic=STATUS).payload != b"online":
        assert time.monotonic() < end, edged.log()
    time.sleep(0.3)  # edged subscribes before it says online; let the SUBACK land
    return edged


def ask(probe: Probe, tensors: list[np.ndarray]) -> list[dict[str, Any]]:
    for i, t in enumerate(tensors):
        probe.publish("sensors/cam/frame", t.tobytes(), response_topic="replies/e2e",
                      correlation_data=str(i).encode())
    replies = probe.collect(len(tensors), timeout=30, topic="replies/e2e")
    assert len(replies) == len(tensors)
    return sorted((r.json() for r in replies), key=lambda b: b["received_at"])


def worker_backends(probe: Probe) -> list[dict[str, Any]]:
    """Per-worker backend as the lead's stats snapshot publishes it (see the README)."""
    body = probe.next(timeout=10, topic=STATS).json()
    return list(body["models"]["digits"]["workers"])


@pytest.mark.integration
@pytest.mark.parametrize("isolation,action", [("thread", "error"), ("process", "abort")])
def test_a_route_whose_delegate_fails_answers_from_the_fallback(
    tmp_path: Path, broker: Broker, probe: Probe, daemons: list[Edged],
    delegate_libs: dict[str, Path], isolation: str, action: str,
) -> None:
    flag = tmp_path / "broken"
    flag.touch()  # broken from the start: the warm-up invoke fails (or aborts, in a child)
    edged = start_failing_daemon(tmp_path, broker, probe, daemons, delegate_libs["failing"],
                                 flag, isolation=isolation, options={"action": action})
    tensors = images(30)
    want = [str(int(np.argmax(o))) for o in cpu_outputs(tensors)]
    replies = ask(probe, tensors)
    assert [r.get("error") for r in replies] == [None] * len(tensors)
    assert sorted(r["result"]["label"] for r in replies) == sorted(want)
    assert "accelerator unavailable at start; serving from the fallback" in edged.log()
    assert edged.proc is not None and edged.proc.poll() is None  # an abort() did not kill it


@pytest.mark.integration
def test_stats_show_the_fallback_and_the_recovery(
    tmp_path: Path, broker: Broker, probe: Probe, daemons: list[Edged],
    delegate_libs: dict[str, Path],
) -> None:
    flag = tmp_path / "broken"
    flag.touch()
    lib = delegate_libs["failing"]
    edged = start_failing_daemon(tmp_path, broker, probe, daemons, lib, flag)
    workers = worker_backends(probe)
    assert [w["backend"] for w in workers] == ["cpu-fallback"] * 2
    assert all(w["fallback_events"] >= 1 for w in workers)
    flag.unlink()  # the device comes back; each worker adopts it at its next message
    end = time.monotonic() + 15
    while True:
        ask(probe, images(4))
        if all(w["backend"] == f"external:{lib}" for w in worker_backends(probe)):
            break
        assert time.monotonic() < end, edged.log()
    assert "accelerator is back" in edged.log()
