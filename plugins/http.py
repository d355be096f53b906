"""Built-in http plugin (being written: registers nothing yet)."""
