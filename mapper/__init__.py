"""Edge side: BlueST boards over BLE (bleak) -> readings on the node's MQTT broker."""
