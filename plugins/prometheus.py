"""Built-in prometheus plugin (being written: registers nothing yet)."""
