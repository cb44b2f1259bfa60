#!/usr/bin/env python3
"""One JSON line of figures for a libFuzzer run (bench/fuzz/run calls it).

Usage: stats.py TARGET LOG START END EXIT_CODE CORPUS_DIR ARTIFACT_DIR [NEW_ARTIFACT...]

Executions and exec/s come from libFuzzer's final statistics
(-print_final_stats=1), else from its last status line; cov and ft from the
last status line (`#N DONE cov: C ft: F corp: ...`, or fork mode's
`#N: cov: C ft: F corp: ...`).
"""
import json
import os
import re
import sys

target, log, start, end, rc, corpus, artifacts = sys.argv[1:8]
new = sys.argv[8:]
text = open(log, errors="replace").read()

status = re.findall(r"^#(\d+):?\s+(?:\w+\s+)?cov: (\d+) ft: (\d+)", text, re.M)
stat = dict(re.findall(r"^stat::(\w+):\s+(\d+)", text, re.M))
execs = int(stat.get("number_of_executed_units", status[-1][0] if status else 0))
seconds = float(end) - float(start)

files = [os.path.join(corpus, f) for f in os.listdir(corpus)] if os.path.isdir(corpus) else []
files = [f for f in files if os.path.isfile(f)]
print(json.dumps({
    "target": target,
    "executions": execs,
    "seconds": round(seconds, 1),
    "exec_per_s": round(execs / seconds) if seconds > 0 else 0,
    "cov": int(status[-1][1]) if status else None,
    "ft": int(status[-1][2]) if status else None,
    "corpus_files": len(files),
    "corpus_bytes": sum(os.path.getsize(f) for f in files),
    "crashes": len(new) + (1 if int(rc) != 0 and not new else 0),
    "exit_code": int(rc),
    "artifacts": [os.path.join(artifacts, a) for a in new],
}))
