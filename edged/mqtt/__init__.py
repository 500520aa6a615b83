"""The MQTT transport: edged's own socket loop and packet codec, reconnect, sessions,
delivery tracking and the outbox. The rest of edged sees ``Inbound`` and ``Outbound``."""

from edged.auth import Material
from edged.mqtt.client import MqttClient

__all__ = ["Material", "MqttClient"]
