"""Built-in junit plugin (being written: registers nothing yet)."""
