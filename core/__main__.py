"""``python -m anyprobe``."""

from .cli import main

main()
