"""Allow ``python -m llmd`` to start the daemon."""

from llmd.daemon import main

if __name__ == "__main__":
    raise SystemExit(main())
