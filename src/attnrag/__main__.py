"""``python -m attnrag`` (and ``torchrun -m attnrag``) runs the CLI."""

from .cli import main

main()
