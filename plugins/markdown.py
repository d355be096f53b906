"""Built-in markdown plugin (being written: registers nothing yet)."""
