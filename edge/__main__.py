"""``python -m edge`` is ``hpo-edge``."""

from edge.cli import main

main()
