"""What every part of fluidos-sensors agrees on: API groups, labels, topics, models."""
