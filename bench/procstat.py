"""Memory and CPU readings from /proc (Linux): RSS of this process or of a process tree, CPU of
a process tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

_PAGE = os.sysconf("SC_PAGE_SIZE")
_TICK = os.sysconf("SC_CLK_TCK")
MiB = 1024 * 1024


def rss_bytes() -> int:
    """This process's resident set size now."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * _PAGE


def peak_rss_bytes() -> int:
    """The kernel's high-water mark of this process's RSS (VmHWM). Unlike ru_maxrss it is
    not inherited from the parent across fork and exec, and reset_peak_rss() restarts it."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return 0


def reset_peak_rss() -> bool:
    """Restart VmHWM from the current RSS (Linux 4.0+); False when the kernel refuses."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class RssSampler:
    """A thread that samples this process's RSS every `interval` seconds; `peak` is the most
    it saw since start()."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def start(self) -> RssSampler:
        self.peak = rss_bytes()
        self._thread.start()
        return self

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())
        return self.peak

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_bytes())


class TreeRss:
    """A thread that reads the RSS of `pid` and its descendants from /proc every `interval`
    seconds. `peak` is the largest sum it saw; `largest` the largest single process, taken
    from each process's VmHWM (the kernel's own high-water mark, so a spike between two
    samples still counts). `peak_pss` is the largest sum of the processes' PSS
    (/proc/PID/smaps_rollup: each page shared by n processes counted 1/n in each): the
    memory the tree holds, where the RSS sum counts twice what a forked pool process
    still shares with its parent. The tree is re-read every `rescan` seconds, not every
    sample: walking /proc costs more than reading a few status files."""

    def __init__(self, pid: int, *, interval: float = 0.05, rescan: float = 0.5) -> None:
        self.pid = pid
        self.interval = interval
        self.rescan = rescan
        self.peak = 0
        self.peak_pss = 0
        self.largest = 0
        self._pids = [pid]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tree-rss", daemon=True)

    def start(self) -> TreeRss:
        self._pids = [self.pid, *descendants(self.pid)]
        self.sample()
        self._thread.start()
        return self

    def stop(self) -> TreeRss:
        self._stop.set()
        self._thread.join()
        self.sample()
        return self

    def sample(self) -> int:
        """Read every known process once; returns the tree's RSS now."""
        total = pss = 0
        for pid in self._pids:
            rss, hwm = _rss_and_hwm(pid)
            total += rss
            pss += _pss(pid)
            self.largest = max(self.largest, hwm, rss)
        self.peak = max(self.peak, total)
        self.peak_pss = max(self.peak_pss, pss)
        return total

    def _run(self) -> None:
        next_scan = time.monotonic() + self.rescan
        while not self._stop.wait(self.interval):
            if time.monotonic() >= next_scan:
                self._pids = [self.pid, *descendants(self.pid)]
                next_scan = time.monotonic() + self.rescan
            self.sample()


def _pss(pid: int) -> int:
    """The proportional set size of `pid` in bytes; 0 once it has exited."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    return 0


def _rss_and_hwm(pid: int) -> tuple[int, int]:
    """VmRSS and VmHWM of `pid` in bytes; zeros once it has exited."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0, 0
    found = {"VmRSS:": 0, "VmHWM:": 0}
    for line in text.splitlines():
        fields = line.split()  # "VmRSS:", "123456", "kB"
        if fields and fields[0] in found:
            found[fields[0]] = int(fields[1]) * 1024
    return found["VmRSS:"], found["VmHWM:"]


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may hold spaces and parentheses: the fields start after the last ')'.
    return text[text.rindex(")") + 2 :].split()


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid` and of its children it has already reaped."""
    fields = _stat(pid)
    if fields is None:
        return 0.0
    # Fields 14-17 of stat (utime, stime, cutime, cstime) are 11-14 here, after pid and comm.
    return sum(int(v) for v in fields[11:15]) / _TICK


def descendants(pid: int) -> list[int]:
    """`pid`'s living children, grandchildren, ..."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat(int(entry.name))
            if fields is not None:
                children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        kids = children.get(todo.pop(), [])
        found.extend(kids)
        todo.extend(kids)
    return found


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by `pid` and all its descendants, living or reaped."""
    return sum(process_cpu_seconds(p) for p in [pid, *descendants(pid)])


def child_json(module: str, *args: str, what: str) -> dict[str, Any]:
    """Run `python -m module args...` in a fresh interpreter from the repository root (so
    its peak RSS is its own) and return the JSON object its last line of output holds.
    Raises RuntimeError naming `what` failed, with the child's error output."""
    proc = subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"{what} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result
