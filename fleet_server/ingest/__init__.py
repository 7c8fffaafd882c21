"""MQTT ingest of cabinet sales and events: validation, batched commits, acknowledgements.

``messages`` validates what arrives, ``store`` commits a batch in one transaction and
settles purchases, ``worker`` connects the two to the broker, and ``runner`` builds a
worker from the server settings for ``fleet-server ingest`` and ``fleet-server serve``.
"""
