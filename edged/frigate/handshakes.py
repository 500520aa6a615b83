"""Frigate's handshakes and uploads, for the door (on its thread, but for an upload's
check, which runs on a thread of its own and answers through ``call``).

A handshake is answered once its model is loaded and checked: one for a model still
loading waits (Frigate waits 30 s); an unknown name gets ``model_available: false`` and
a log line naming the served ones. Uploads are refused unless enabled
(edged.frigate.uploads).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

import structlog
import zmq

from edged.config.frigate import UploadsConfig
from edged.frigate import protocol, uploads
from edged.frigate.placement import Placement
from edged.frigate.protocol import ModelData, ModelRequest
from edged.frigate.serve import Served

log = structlog.get_logger("edged.frigate")
Send = Callable[[zmq.Socket[bytes], list[bytes], bytes], None]


class Handshakes:
    def __init__(self, place: Placement, send: Send, count: Callable[[str], None],
                 call: Callable[[Callable[[], None]], object],
                 uploads_config: Callable[[], UploadsConfig]) -> None:
        self._place = place
        self._send = send
        self._count = count
        self._call = call
        """Runs a function on the door's thread (an upload's answer)."""
        self._uploads_config = uploads_config
        self._loading: set[str] = set()
        """Names served once their model is loaded: their handshakes wait meanwhile."""
        self._held: dict[str, list[tuple[zmq.Socket[bytes], list[bytes]]]] = {}
        self._uploading: threading.Thread | None = None
        self.on_upload: Callable[[], None] | None = None
        """Asks for a reload once an upload is kept (it is served from then on)."""

    def loading(self, names: Sequence[str]) -> None:
        self._loading = set(names)

    def ready(self, served: Served) -> None:
        """``served`` is loaded and checked: answer the handshakes waiting for it."""
        self._place.served[served.name] = served
        self._loading.discard(served.name)
        for sock, envelope in self._held.pop(served.name, []):
            self._answer_handshake(sock, envelope, served)

    def settle(self) -> None:
        """Served models replaced (a reload): handshakes still waiting are for models that
        will not load now."""
        self._loading.clear()
        for name, held in self._held.items():
            for sock, envelope in held:
                self._unknown(sock, envelope, name)
        self._held.clear()

    def model_request(self, sock: zmq.Socket[bytes], envelope: list[bytes],
                      request: ModelRequest) -> None:
        served = self._place.served.get(request.name)
        if served is None and request.name in self._loading:
            self._count("handshakes_held")
            log.info("Frigate asked for a model still loading; answering once it is ready",
                     model_name=request.name, ready=sorted(self._place.served))
            self._held.setdefault(request.name, []).append((sock, envelope))
            return
        if served is None:
            self._unknown(sock, envelope, request.name)
            return
        self._answer_handshake(sock, envelope, served)

    def _unknown(self, sock: zmq.Socket[bytes], envelope: list[bytes], name: str) -> None:
        self._count("handshake_unknown")
        log.warning("Frigate asked for a model edged does not serve",
                    model_name=name,
                    served=sorted([*self._place.served, *self._loading]),
                    fix="set frigate.models[].name to the basename of Frigate's "
                    "model.path, or serve that model")
        self._send(sock, envelope, protocol.handshake(False))

    def _answer_handshake(self, sock: zmq.Socket[bytes], envelope: list[bytes],
                          served: Served) -> None:
        self._place.remember(envelope[0], served.name)
        self._count("handshakes")
        log.info("Frigate detector connected", model_name=served.name,
                 route=served.route.name)
        self._send(sock, envelope, protocol.handshake(True))

    def model_data(self, sock: zmq.Socket[bytes], envelope: list[bytes],
                   request: ModelData) -> None:
        config = self._uploads_config()
        if not config.enabled:
            self._count("uploads_refused")
            log.warning("Frigate uploaded a model; uploads are off", model_name=request.name,
                        bytes=len(request.data), served=sorted(self._place.served),
                        fix="serve the model under frigate.models (name: the basename of "
                        "Frigate's model.path), or set frigate.uploads.enabled: true with "
                        "a dir and max_bytes")
            self._send(sock, envelope, protocol.saved(False))
            return
        why = uploads.refusal(config, set(self._place.served), request.name, len(request.data))
        if why is None and self._uploading is not None and self._uploading.is_alive():
            why = "another upload is being checked; Frigate's detector will ask again"
        if why is not None:
            self._count("uploads_refused")
            log.warning("Frigate upload refused", model_name=request.name, error=why)
            self._send(sock, envelope, protocol.saved(False))
            return
        # The check takes a second or more: off this thread, which serves the detectors.
        self._uploading = threading.Thread(
            target=self._upload, args=(sock, envelope, request, None),
            name="frigate-upload", daemon=True)
        self._uploading.start()

    def _upload(self, sock: zmq.Socket[bytes], envelope: list[bytes], request: ModelData,
                model_type: str | None) -> None:
        config = self._uploads_config()
        ok = False
        try:
            kept = uploads.keep(config, request.name, request.data, model_type)
            log.info("Frigate upload checked and kept; serving it from the reload",
                     model_name=kept.name, path=str(kept.path), postprocess=kept.postprocess)
            end = time.monotonic() + uploads.CHECK_TIMEOUT_S
            while self.on_upload is None and time.monotonic() < end:
                time.sleep(0.05)  # uploaded while edged still loads: reload once it serves
            if self.on_upload is not None:
                self.on_upload()
            while request.name not in self._place.served and time.monotonic() < end:
                time.sleep(0.05)
            ok = request.name in self._place.served
            if not ok:
                log.error("Frigate upload kept but not served: see the reload's log",
                          model_name=request.name)
        except (OSError, ValueError) as exc:
            log.warning("Frigate upload refused: it failed the check", model_name=request.name,
                        error=str(exc))
        self._count("uploads_served" if ok else "uploads_refused")

        def reply() -> None:
            if ok:
                self._place.remember(envelope[0], request.name)
            self._send(sock, envelope, protocol.saved(ok))

        self._call(reply)
