#!/usr/bin/python3
"""Runs one `quantd run` under /usr/bin/time -v and splits its cost into phases.

usage: /usr/bin/python3 bench/quantd_phases.py LABEL SIZE_BYTES OUT_DIR LOG -- QUANTD run ARGS...
Prints one table row (see quantize_bench.sh): totals from /usr/bin/time -v (wall, user+sys,
maximum resident set size), and per phase of `quantd run`'s progress lines (load, pass,
save, evaluation) the wall time and the CPU time read from /proc/<pid>/stat when the
line arrives (10 ms tick resolution; a phase ends when the next progress line is read).
"""
import json
import os
import re
import subprocess
import sys
import time

TICK = os.sysconf("SC_CLK_TCK")


def cpu_and_hwm(pid):
    """(user+sys seconds, VmHWM in kB) of pid, or None once it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / TICK   # utime, stime (fields 14, 15)
        hwm = 0
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    hwm = int(line.split()[1])
        return (cpu, hwm) if hwm else None   # no VmHWM: already exiting (zombie)
    except (OSError, IndexError, ValueError):
        return None


def child_of(pid):
    """The first child of pid (quantd under /usr/bin/time), or pid itself."""
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            kids = f.read().split()
        return int(kids[0]) if kids else pid
    except (OSError, ValueError):
        return pid


def parse_time_v(path):
    out = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.strip().rpartition(": ")
            out[k] = v
    wall = out.get("Elapsed (wall clock) time (h:mm:ss or m:ss)", "0:0")
    secs = 0.0
    for part in wall.split(":"):
        secs = secs * 60 + float(part)
    return {
        "wall": secs,
        "cpu": float(out.get("User time (seconds)", "nan")) + float(out.get("System time (seconds)", "nan")),
        "rss_kb": int(out.get("Maximum resident set size (kbytes)", "0")),
        "exit": out.get("Exit status", "?"),
    }


PHASES = (("loading model", "load"), ("pass ", "pass"), ("saving model", "save"),
          ("evaluating", "eval"), ("done", "exit"))


def main(argv):
    if len(argv) < 7 or argv[5] != "--":
        print(__doc__.strip(), file=sys.stderr)
        return 2
    label, size, out_dir, log_path = argv[1], int(argv[2]), argv[3], argv[4]
    cmd = argv[6:]
    tfile = log_path + ".time"
    t0 = time.monotonic()
    p = subprocess.Popen(["/usr/bin/time", "-v", "-o", tfile] + cmd,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    qpid = None
    marks = []   # (phase key, t, cpu, hwm)
    with open(log_path, "w") as log:
        for raw in p.stderr:
            line = raw.decode("utf-8", "replace")
            t = time.monotonic() - t0
            log.write("%8.3f %s" % (t, line))
            m = re.match(r"\[\s*\d+%\] (.*)", line)
            if not m:
                continue
            if qpid is None:
                qpid = child_of(p.pid)
            s = cpu_and_hwm(qpid)
            key = next((k for pre, k in PHASES if m.group(1).startswith(pre)), None)
            if s and key:
                marks.append((key, t, s[0], s[1]))
    p.wait()
    tot = parse_time_v(tfile)
    ok = p.returncode == 0
    metrics = {}
    try:
        with open(os.path.join(out_dir, "metrics.json")) as f:
            metrics = json.load(f)
    except (OSError, ValueError):
        ok = False
    ratio = metrics.get("size", {}).get("ratio", float("nan"))
    pass_s = sum(p_.get("seconds", 0) for p_ in metrics.get("passes", []))
    acc = metrics.get("accuracy", {})
    cos = acc.get("min_cosine")
    # phase table: phase k runs from its mark to the next one; the last to process exit
    ph = {}
    for i, (key, t, cpu, hwm) in enumerate(marks):
        if i + 1 < len(marks):
            t1, c1, h1 = marks[i + 1][1], marks[i + 1][2], marks[i + 1][3]
        else:
            t1, c1, h1 = tot["wall"], tot["cpu"], tot["rss_kb"]
        ph[key] = (t1 - t, max(0.0, c1 - cpu), h1)   # /proc ticks vs rusage: clamp rounding
    start_cpu = marks[0][2] if marks else float("nan")

    def cpu(key):
        return "%5.2f" % ph[key][1] if key in ph else "    -"

    def hwm(key):
        return "%5.0f" % (ph[key][2] / 1024.0) if key in ph else "    -"

    if not ok:
        note = "FAILED (exit %s, see %s)" % (tot["exit"], log_path)
    else:
        qn = metrics.get("quantized_nodes", {})
        note = "%d nodes quantized%s, pass wall %.3fs, " % (
            metrics.get("quantized_nodes_total", 0),
            " (%s)" % ", ".join("%s %d" % kv for kv in sorted(qn.items())) if qn else "", pass_s)
        note += ("min cosine %.5f" % cos) if cos is not None else "accuracy %s" % acc.get("status", "?")
    print("%-34s %7.1f %6.2f %6.2f %7.0f %6.3f | %5.2f %s %s %s %s %s | %s %s %s %s | %s" % (
        label, size / 1e6, tot["wall"], tot["cpu"], tot["rss_kb"] / 1024.0, ratio,
        start_cpu, cpu("load"), cpu("pass"), cpu("save"), cpu("eval"), cpu("exit"),
        hwm("load"), hwm("pass"), hwm("save"), hwm("eval"), note))
    sys.stdout.flush()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
