from fluidos_sensors.cli import app

app(prog_name="fluidos-sensors")
