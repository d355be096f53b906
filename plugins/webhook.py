"""Built-in webhook plugin (being written: registers nothing yet)."""
