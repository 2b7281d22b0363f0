"""`python -m fastact ...`: the command line, which lives with the apps
(fastact_apps/cli.py); the library itself never imports them."""
from fastact_apps.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
