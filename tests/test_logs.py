"""Library log lines go through the structured log, and a repeated one cannot flood it."""

from __future__ import annotations

import json
import subprocess
import sys


def test_library_lines_are_json_and_repeats_are_counted() -> None:
    script = """
import logging, time
import shared.logs as logs
logs.configure("json")
for handler in logging.getLogger().handlers:
    for f in handler.filters:
        f.window = 0.5
for i in range(200):
    logging.getLogger("aiokafka").error("Unable connect to node with id %s", 111)
time.sleep(0.6)
logging.getLogger("aiokafka").error("Unable connect to node with id %s", 111)
logging.getLogger("uvicorn.error").warning("another line")
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    lines = [json.loads(line) for line in run.stderr.splitlines()]
    repeated = [line for line in lines if line["logger"] == "aiokafka"]
    assert len(repeated) == 6  # five of the burst, then one after the window with the count
    assert repeated[-1]["similar_lines_suppressed"] == 195
    assert repeated[0]["event"] == "Unable connect to node with id 111" and repeated[0]["level"] == "error"
    assert any(line["logger"] == "uvicorn.error" for line in lines)


def test_lines_from_many_threads_are_written_whole() -> None:
    """Our lines and the libraries' share one stream: neither may be cut into by the other."""
    script = """
import logging, threading
import shared.logs as logs
logs.configure("json")
log = logs.get_logger("t")
def ours():
    for i in range(2000):
        log.warning("ours " + "x" * 300, i=i)
def theirs():
    for i in range(2000):
        logging.getLogger("lib%d" % (i % 100)).warning("theirs %s %s", i, "y" * 300)
threads = [threading.Thread(target=f) for f in (ours, theirs, ours, theirs)]
[t.start() for t in threads]
[t.join() for t in threads]
"""
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    lines = run.stderr.splitlines()
    assert len(lines) > 4000
    garbled = []
    for line in lines:
        try:
            json.loads(line)
        except ValueError:
            garbled.append(line[:200])
    assert garbled == [], garbled[:3]
