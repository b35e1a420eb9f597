from fluidos_sensors_cli import app

app(prog_name="fluidos-sensors")
