"""A second door beside MQTT: Frigate's zmq detector protocol (docs/frigate.md).

``protocol`` reads and writes the frames (pure), ``labelmaps`` gives classes Frigate's ids,
``serve`` binds the served models as routes, ``placement`` tells which one a frame is for,
``handshakes`` answers handshakes and uploads (``uploads`` checks and keeps them), ``door``
owns the socket. Only ``door`` and ``handshakes`` import pyzmq (the ``edged[frigate]``
extra)."""
