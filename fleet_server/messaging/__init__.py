"""The fleet server's MQTT side: publishing commands and acknowledgements to cabinets."""
