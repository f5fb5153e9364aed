#!/usr/bin/env python3
"""fdatasync after an append that grows a file vs after a write over zeros already written.

Why the native log lays zeros ahead of its end (crates/broker/src/native/wal.rs): on a
file that grows, each fdatasync must also write the inode (its size changed). Prints
wall-clock and CPU time per write+fdatasync for both, ROUNDS times alternated.
Usage: scripts/fsync-overwrite.py [DIR] [WRITES] [BYTES] [ROUNDS]
"""
import os
import resource
import sys
import time

directory = sys.argv[1] if len(sys.argv) > 1 else "."
writes = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
size = int(sys.argv[3]) if len(sys.argv) > 3 else 700
rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3


def run(zeros_first):
    path = os.path.join(directory, f".fsync-overwrite-{os.getpid()}")
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        if zeros_first:
            os.write(fd, b"\0" * (size * writes + 4096))
            os.fsync(fd)
            os.lseek(fd, 0, os.SEEK_SET)
        buf = b"x" * size
        before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        for _ in range(writes):
            os.write(fd, buf)
            os.fdatasync(fd)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        return wall / writes * 1e6, cpu / writes * 1e6
    finally:
        os.close(fd)
        os.remove(path)


print(f"{writes} writes of {size} bytes, each followed by fdatasync, in {os.path.abspath(directory)}")
for _ in range(rounds):
    for label, zeros_first in (("appending", False), ("over zeros", True)):
        wall, cpu = run(zeros_first)
        print(f"{label:>10}: {wall:6.0f} µs wall, {cpu:5.0f} µs CPU per write+fdatasync")
