"""A second door beside MQTT: Frigate's zmq detector protocol (docs/frigate.md).

``protocol`` reads and writes the frames (pure), ``labelmaps`` gives classes Frigate's ids,
``serve`` binds the served models as routes, ``door`` owns the socket. Only ``door``
imports pyzmq (the ``edged[frigate]`` extra)."""
