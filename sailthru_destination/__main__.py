"""``python -m sailthru_destination``: the ``sailthru-destination`` command line."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
