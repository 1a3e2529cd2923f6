"""Entry point of `python -m bench`."""

import os
import sys

# The mini suite needs no network; never let a hub client wait 20-45 s on retries before failing.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from bench.cli import main  # noqa: E402

sys.exit(main())
