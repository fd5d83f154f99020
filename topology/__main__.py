from topology.cli import app

app(prog_name="python -m topology")
