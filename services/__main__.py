"""``python -m services`` is ``hpo-services``."""

from services.cli import main

main()
