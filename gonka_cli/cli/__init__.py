"""The command-line layer: the only code that uses typer and rich."""
