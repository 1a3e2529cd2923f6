"""The mini stand-ins of the tasks the 20-task benchmark adds (registered in `tasks/families.py`)."""

from __future__ import annotations

from tasks.procedural import Family

FAMILIES: dict[str, Family] = {}
