"""Built-in nagios plugin (being written: registers nothing yet)."""
