"""edged: a deadline-aware TFLite inference daemon fed and read over MQTT."""

__version__ = "0.1.0"
