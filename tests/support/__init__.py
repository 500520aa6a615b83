"""Helpers for the integration tests: a private mosquitto, an edged process, an MQTT probe."""
