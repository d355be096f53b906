"""Built-in dns plugin (being written: registers nothing yet)."""
