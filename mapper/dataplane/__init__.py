"""The mapper's data plane: readings to the broker, twins to DeviceStatus. No BLE in here."""
