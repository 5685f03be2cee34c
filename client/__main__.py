"""``python -m client`` is ``hpo``."""

from client.cli import main

main()
