"""Content hashes of weight files, and the digest that names a set of weights in every result row.

A unit of results is keyed by the weights that produced it (see `bench.results.unit_key`), so the digest is
computed from the bytes of the files a run loads, never from a label or a stored claim about them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path

from core.atomic import write_atomically


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def remembered_sha256(path: Path) -> str:
    """The file's sha256, kept beside it (`NAME.sha256`) for as long as its size and modification time stay
    the same: cached conversions of multi-gigabyte checkpoints are hashed once, not in every run."""
    record_path = path.with_name(path.name + ".sha256")
    stat = path.stat()
    stamp = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    try:
        record = json.loads(record_path.read_text())
        if {key: record.get(key) for key in stamp} == stamp:
            return str(record["sha256"])
    except (OSError, ValueError, KeyError, AttributeError):
        pass  # absent or unreadable: hash again
    record = stamp | {"sha256": sha256_file(path)}
    write_atomically(record_path, lambda partial_path: partial_path.write_text(json.dumps(record)))
    return record["sha256"]


def weights_digest(hashes: Mapping[str, str]) -> str:
    """One short digest of named content hashes (file name -> sha256, plus anything else that shapes the
    results, e.g. the recipe): equal for the same bytes under the same names, different otherwise."""
    return hashlib.sha256(json.dumps(dict(hashes), sort_keys=True).encode()).hexdigest()[:16]
