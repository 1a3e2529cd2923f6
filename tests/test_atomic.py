"""Files and folders written by several processes at once: every reader sees a whole one, every writer finishes."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

from core.atomic import publish_folder, write_atomically

ROOT = Path(__file__).resolve().parents[1]
SIZE = 1 << 16  # bytes per version of the contested file

WRITER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from core.atomic import write_atomically
    target, byte, start = Path(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
    while time.time() < start:
        time.sleep(0.001)
    for _ in range(150):
        write_atomically(target, lambda path: path.write_bytes(bytes([byte]) * {size}))
""").format(size=SIZE)


def test_two_processes_writing_one_file_each_publish_whole_files_and_a_reader_never_sees_a_partial_one(tmp_path):
    target = tmp_path / "unit.parquet"
    write_atomically(target, lambda path: path.write_bytes(b"\0" * SIZE))
    start = time.time() + 2.0  # both writers begin together, after their imports
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(target), str(byte), str(start)], cwd=ROOT,
                                stderr=subprocess.PIPE, text=True) for byte in (1, 2)]
    reads, torn = 0, 0
    while any(writer.poll() is None for writer in writers):
        content = target.read_bytes()
        reads += 1
        torn += len(content) != SIZE or len(set(content)) != 1
    errors = [writer.stderr.read() for writer in writers]
    assert [writer.returncode for writer in writers] == [0, 0], errors
    assert torn == 0 and reads > 10
    assert set(target.read_bytes()) <= {1, 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["unit.parquet"]  # no temporary file left behind


def test_a_writer_that_fails_leaves_neither_a_file_nor_its_temporary(tmp_path):
    def fail(path: Path) -> None:
        path.write_bytes(b"half")
        raise KeyboardInterrupt

    try:
        write_atomically(tmp_path / "unit.parquet", fail)
    except KeyboardInterrupt:
        pass
    assert list(tmp_path.iterdir()) == []


def test_a_cache_folder_another_process_published_first_is_kept_and_this_one_dropped(tmp_path):
    target = tmp_path / "split"

    def build(content: str, staging: Path) -> str:
        staging.mkdir()
        (staging / "data").write_text(content)
        if content == "second":  # the other process finishes while this one is still building
            publish_folder(target, lambda other: build("first", other))
        return content

    assert publish_folder(target, lambda staging: build("second", staging)) == "second"
    assert (target / "data").read_text() == "first"
    assert [p.name for p in tmp_path.iterdir()] == ["split"]


def test_a_rebuild_replaces_the_folder_whole(tmp_path):
    target = tmp_path / "zoo"
    target.mkdir()
    (target / "stale").write_text("old")

    def build(staging: Path) -> None:
        staging.mkdir()
        (staging / "fresh").write_text("new")

    publish_folder(target, build, replace=True)
    assert [p.name for p in target.iterdir()] == ["fresh"] and [p.name for p in tmp_path.iterdir()] == ["zoo"]


LOAD_SPLIT = textwrap.dedent("""
    import sys, time
    from tasks.mini import MiniData, load_split
    start = float(sys.argv[1])
    while time.time() < start:
        time.sleep(0.001)
    print(len(load_split("vehicles", "test", MiniData(train_per_task=32, test_per_task=300))))
""")


def test_two_processes_generating_one_split_on_a_cold_cache_both_get_it(tmp_path):
    environment = {"MERGEBENCH_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                   "PATH": "/usr/bin:/bin"}
    start = time.time() + 4.0
    loaders = [subprocess.Popen([sys.executable, "-c", LOAD_SPLIT, str(start)], cwd=ROOT, env=environment,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [loader.communicate(timeout=120) for loader in loaders]
    assert [loader.returncode for loader in loaders] == [0, 0], [err[-500:] for _, err in outputs]
    assert [out.strip() for out, _ in outputs] == ["300", "300"]
    (split,) = (tmp_path / "cache" / "mini-data").glob("*/vehicles/test")
    assert [p.name for p in split.parent.iterdir()] == ["test"]  # the second build was dropped, not left beside it
