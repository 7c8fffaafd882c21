"""Fleet monitoring over MQTT: the subscriber that feeds status and telemetry to the handlers.

The handlers themselves are in ``fleet_server.services.monitoring``.
"""
