"""Built-in ssh plugin (being written: registers nothing yet)."""
