"""`python -m mcuflow` runs the command line."""

from mcuflow.cli import main

main()
