"""Built-in csv plugin (being written: registers nothing yet)."""
