"""The edge agent: one MQTT subscription per topic, fan-out to every target, durable queues."""
