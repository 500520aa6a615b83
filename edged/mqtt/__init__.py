"""The MQTT transport: edged's own socket loop and packet codec, reconnect, sessions,
delivery tracking and the outbox. The rest of edged sees ``Inbound`` and ``Outbound``."""

from edged.mqtt.client import Material, MqttClient

__all__ = ["Material", "MqttClient"]
