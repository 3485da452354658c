"""``python -m likeflow`` runs the command line."""

from .cli import main

main()
