"""``python -m ossfs``: the same as the ``ossfs`` command (see :mod:`ossfs.cli`)."""
from ossfs.cli import main

if __name__ == "__main__":
    main()
