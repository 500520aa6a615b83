"""The MQTT adapter (paho): connect, reconnect, subscribe, publish. paho's types stop in
this package; the rest of edged sees ``Inbound`` and ``Outbound``."""

from edged.mqtt.client import MqttClient

__all__ = ["MqttClient"]
