"""The `ninserve` command: serve, predict, and the model commands."""
