"""Which served model a Frigate detector's frame is for (no sockets, no clocks).

A detector names its model once, at its handshake; its frames do not. So the door
remembers each detector (its ZeroMQ routing id) with the name it asked for. A detector
edged has not heard from (edged restarted under it, and its socket reconnected by itself)
is placed by its frame: the one served model whose input the tensor fits and whose
decoder serves the frame's model type.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from edged.frigate import protocol
from edged.frigate.protocol import Detect, Fit
from edged.frigate.serve import Served, decoder_fits

MAX_PEERS = 4096
"""Detectors remembered; the one heard from longest ago is forgotten past it (it is placed
by its frame again, or asked to make its handshake again)."""
MAX_FITS = 1024


class Placement:
    def __init__(self, served: Sequence[Served]) -> None:
        self.served = {s.name: s for s in served}
        self._peers: OrderedDict[bytes, str] = OrderedDict()
        self._fits: dict[tuple[str, tuple[int, ...], str], Fit | str] = {}
        self._reported: set[tuple[str, str]] = set()

    def __len__(self) -> int:
        """Detectors remembered."""
        return len(self._peers)

    def replace(self, served: Sequence[Served]) -> None:
        """Serve ``served`` from now on (a reload); detectors keep the names they asked
        for, which may no longer be served."""
        self.served = {s.name: s for s in served}
        self._fits.clear()
        self._reported.clear()

    def remember(self, identity: bytes, name: str) -> None:
        self._peers[identity] = name
        self._peers.move_to_end(identity)
        while len(self._peers) > MAX_PEERS:
            self._peers.popitem(last=False)

    def asked(self, identity: bytes) -> str | None:
        """The name this detector asked for at its handshake, if edged heard it."""
        return self._peers.get(identity)

    def served_for(self, identity: bytes, request: Detect) -> Served | None:
        """The model this detector asked for (None when a reload stopped serving it);
        without a handshake, the only served model its frame fits, else None."""
        name = self._peers.get(identity)
        if name is not None:
            return self.served.get(name)
        kind = request.model_type
        fitting = [s for s in self.served.values()
                   if isinstance(self.fit(s, request), Fit) and (kind is None or (
                       s.model_type in (None, kind) and decoder_fits(kind, s.decoder) is None))]
        if len(fitting) == 1:
            self.remember(identity, fitting[0].name)
            return fitting[0]
        return None

    def fit(self, served: Served, request: Detect) -> Fit | str:
        """How the frame becomes the model's input, or why it cannot (cached per shape)."""
        key = (served.name, request.shape, request.dtype.name)
        how = self._fits.get(key)
        if how is None:
            if len(self._fits) > MAX_FITS:
                self._fits.clear()
            how = self._fits[key] = protocol.fit(request.shape, request.dtype, served.spec)
        return how

    def first_report(self, served: Served, what: str) -> bool:
        """Whether a problem of this kind with this model is new (reported once)."""
        key = (served.name, what)
        if key in self._reported:
            return False
        self._reported.add(key)
        return True
