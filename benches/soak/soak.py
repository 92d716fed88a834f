#!/usr/bin/env python3
"""A soak of the daemon as a lab runs it, with faults. Not a CI test: it takes tens of minutes.

`lumiq run` with the simulated instrument acquires every `--interval` seconds against a real
Mosquitto (persistence on) reached through a TCP proxy, while an independent subscriber
(`mosquitto_sub`, persistent session, QoS 1, straight to the broker) stands in for the LIMS.
Until the outbox holds `--acquisitions` records, a fault is injected every `--fault-every`
seconds, in turn:

- broker SIGKILL, restarted 2 s later;
- daemon SIGKILL, restarted;
- daemon SIGTERM (must exit 0), restarted;
- link cut: the proxy drops every connection and refuses new ones for 5 s;
- disk full: a file fills the state directory's file system below
  `state.min_free_disk_mb` for 15 s (triggers are refused, nothing is lost), then is freed.

Then the daemon stops acquiring, is given time to deliver everything, and the script prints:
records committed, received, lost, unknown, seq gaps, duplicates; archive folders whose
`record.json` differs from the outbox's record (byte for byte) or is missing; the daemon's
RSS and open file descriptors over time (per run of the daemon, first and last samples);
the faults injected. Exit 0 when nothing was lost or unknown, no seq gap, no archive
mismatch and every SIGTERM exited 0.

    python3 benches/soak/soak.py --lumiq target/release/lumiq --acquisitions 1000
"""

import argparse
import json
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
INSTRUMENT = "sim-ivis-01"  # the shipped simulated calibration set's instrument
SITE = "soak-lab"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Proxy:
    """A TCP proxy whose link can be cut: every connection dropped, new ones refused."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.port = free_port()
        self.cut_until = 0.0
        self.conns = []
        self.lock = threading.Lock()
        self.srv = socket.socket()
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind(("127.0.0.1", self.port))
        self.srv.listen(16)
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            c, _ = self.srv.accept()
            if time.time() < self.cut_until:
                c.close()
                continue
            try:
                u = socket.create_connection(("127.0.0.1", self.upstream), timeout=2)
            except OSError:
                c.close()
                continue
            with self.lock:
                self.conns += [c, u]
            for a, b in ((c, u), (u, c)):
                threading.Thread(target=self.pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def pipe(a, b):
        try:
            while True:
                d = a.recv(65536)
                if not d:
                    break
                b.sendall(d)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self, seconds):
        self.cut_until = time.time() + seconds
        with self.lock:
            for s in self.conns:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
            self.conns = []


class Broker:
    def __init__(self, work):
        self.port = free_port()
        self.conf = work / "mosquitto.conf"
        (work / "mosq").mkdir(exist_ok=True)
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\nuser root\n"
            f"persistence true\npersistence_location {work / 'mosq'}/\nautosave_interval 1\n"
            f"log_dest file {work / 'mosquitto.log'}\n"
        )
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen(["/usr/sbin/mosquitto", "-c", str(self.conf)])
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise SystemExit("mosquitto did not start")

    def kill9(self):
        self.proc.kill()
        self.proc.wait()


class Subscriber:
    """mosquitto_sub with a persistent session, restarted if it exits."""

    def __init__(self, port, out):
        self.port, self.out = port, out
        self.proc = None
        self.restarts = 0
        self.start()

    def start(self):
        self.proc = subprocess.Popen(
            ["mosquitto_sub", "-h", "127.0.0.1", "-p", str(self.port), "-c", "-i", "soak-lims",
             "-q", "1", "-t", f"lumiq/v1/{SITE}/{INSTRUMENT}/measurement"],
            stdout=open(self.out, "a"), stderr=subprocess.DEVNULL)

    def keep_alive(self):
        if self.proc.poll() is not None:
            self.restarts += 1
            self.start()


def config(work, proxy_port, min_free_mb, interval):
    cal = work / "calibration"
    shutil.copytree(ROOT / "calibration" / "sim-ivis-01", cal)
    text = f"""[instrument]
id = "{INSTRUMENT}"
site = "{SITE}"

[state]
dir = "{work / 'state'}"
min_free_disk_mb = {min_free_mb}

[calibration]
dir = "{cal}"
max_age_days = 3650

[status]
socket = "{work / 'lumiq.sock'}"

[broker]
host = "127.0.0.1"
port = {proxy_port}

[camera]
kind = "simulated"

[controller]
kind = "simulated"

[acquisition]
auto_interval_s = {interval}
"""
    p = work / "lumiq.toml"
    p.write_text(text)
    return p


class Daemon:
    def __init__(self, lumiq, cfg, log):
        self.lumiq, self.cfg, self.log = lumiq, cfg, log
        self.proc = None
        self.runs = 0
        self.term_failures = 0
        self.samples = []  # (run, t, rss_kb, fds)

    def start(self):
        env = dict(os.environ)
        env.pop("NOTIFY_SOCKET", None)
        env["LUMIQ_LOGGING__FORMAT"] = "text"
        self.proc = subprocess.Popen([self.lumiq, "run", "--config", str(self.cfg)],
                                     stdout=subprocess.DEVNULL, stderr=open(self.log, "a"), env=env)
        self.runs += 1

    def kill9(self):
        self.proc.kill()
        self.proc.wait()

    def term(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=40)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = -9
        if code != 0:
            self.term_failures += 1
        return code

    def sample(self, t0):
        pid = self.proc.pid
        try:
            status = Path(f"/proc/{pid}/status").read_text()
            rss = int(next(l for l in status.splitlines() if l.startswith("VmRSS")).split()[1])
            fds = len(os.listdir(f"/proc/{pid}/fd"))
            self.samples.append((self.runs, round(time.time() - t0), rss, fds))
        except (OSError, StopIteration):
            pass


def outbox_rows(db):
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute(
            "SELECT seq, measurement_id, record, acked_at_ms IS NOT NULL, record_schema FROM outbox ORDER BY seq"
        ).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        con.close()


def committed(db):
    if not db.exists():
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return con.execute("SELECT COALESCE(MAX(seq), 0) FROM outbox").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        con.close()


def fill_disk(path, min_free_mb):
    st = os.statvfs(path)
    free_mb = st.f_bavail * st.f_frsize // (1 << 20)
    size = free_mb - min_free_mb + 256
    f = path / "soak-fill.bin"
    if size > 0:
        subprocess.run(["fallocate", "-l", f"{size}M", str(f)], check=True)
    return f


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--lumiq", default=str(ROOT / "target/release/lumiq"))
    ap.add_argument("--acquisitions", type=int, default=1000)
    ap.add_argument("--interval", type=int, default=1, help="auto_interval_s")
    ap.add_argument("--fault-every", type=float, default=45.0, help="seconds between faults")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    a = ap.parse_args()
    random.seed(a.seed)
    work = Path(tempfile.mkdtemp(prefix="lumiq-soak-"))
    (work / "state").mkdir()
    st = os.statvfs(work)
    free_mb = st.f_bavail * st.f_frsize // (1 << 20)
    # Half the free space: other work on the machine may take some while the soak runs;
    # the fill (fallocate, instant) takes the rest down below it.
    min_free_mb = max(1, free_mb // 2)
    broker = Broker(work)
    proxy = Proxy(broker.port)
    sub_out = work / "received.txt"
    sub = Subscriber(broker.port, sub_out)
    cfg = config(work, proxy.port, min_free_mb, a.interval)
    daemon = Daemon(a.lumiq, cfg, work / "daemon.log")
    daemon.start()
    db = work / "state" / "outbox.sqlite"
    faults = {"broker_kill": 0, "daemon_kill": 0, "daemon_term": 0, "link_cut": 0, "disk_full": 0}
    order = list(faults)
    t0 = time.time()
    next_fault = t0 + a.fault_every
    next_sample = t0
    k = 0
    unexpected = 0
    print(f"soak in {work}: {a.acquisitions} acquisitions, a fault every {a.fault_every:.0f} s", flush=True)
    while committed(db) < a.acquisitions:
        now = time.time()
        sub.keep_alive()
        if daemon.proc.poll() is not None:
            unexpected += 1
            print(f"  daemon exited on its own with {daemon.proc.returncode}; restarted", flush=True)
            if unexpected > 5:
                log = (work / "daemon.log").read_text().splitlines()[-5:]
                raise SystemExit("the daemon keeps exiting:\n" + "\n".join(log))
            daemon.start()
        if now >= next_sample:
            daemon.sample(t0)
            next_sample = now + 5
            if int(now - t0) % 60 < 5:
                print(f"  {now - t0:6.0f} s: {committed(db)} committed, faults {faults}", flush=True)
        if now >= next_fault:
            kind = order[k % len(order)]
            k += 1
            faults[kind] += 1
            if kind == "broker_kill":
                broker.kill9()
                time.sleep(2)
                broker.start()
            elif kind == "daemon_kill":
                daemon.kill9()
                daemon.start()
            elif kind == "daemon_term":
                code = daemon.term()
                if code != 0:
                    print(f"  SIGTERM exit code {code}", flush=True)
                daemon.start()
            elif kind == "link_cut":
                proxy.cut(5)
            elif kind == "disk_full":
                f = fill_disk(work, min_free_mb)
                time.sleep(15)
                f.unlink(missing_ok=True)
            next_fault = time.time() + a.fault_every * random.uniform(0.7, 1.3)
        time.sleep(0.5)
    elapsed = time.time() - t0
    # Stop acquiring: a last daemon run without the auto interval delivers what is left.
    daemon.term()
    cfg.write_text(cfg.read_text().replace(f"auto_interval_s = {a.interval}", "auto_interval_s = 0"))
    daemon.start()
    deadline = time.time() + 180
    while time.time() < deadline:
        sub.keep_alive()
        rows = outbox_rows(db)
        if rows and all(r[3] for r in rows):
            break
        time.sleep(1)
    time.sleep(3)
    daemon.term()
    sub.proc.terminate()
    broker.kill9()

    rows = outbox_rows(db)
    by_id = {r[1]: r for r in rows}
    received = []
    for line in sub_out.read_text().splitlines():
        try:
            received.append(json.loads(line))
        except json.JSONDecodeError:
            pass
    got_ids = [m["measurement_id"] for m in received]
    unique = set(got_ids)
    lost = [i for i in by_id if i not in unique]
    unknown = [i for i in unique if i not in by_id]
    seqs = sorted({m["seq"] for m in received})
    gaps = [s for s in range(1, (seqs[-1] if seqs else 0) + 1) if s not in set(seqs)]
    archive = work / "state" / "archive"
    folders = {}
    for day in archive.iterdir():
        if day.is_dir() and day.name[:2] == "20":
            for f in day.iterdir():
                folders[f.name] = f
    mismatch, missing = [], []
    for seq, mid, record, _, schema in rows:
        f = folders.get(mid)
        name = "record.json" if schema == "lumiq.measurement" else "sequence.json"
        if f is None or not (f / name).is_file():
            missing.append(mid)
        elif (f / name).read_text() != record:
            mismatch.append(mid)
    runs = {}
    for run, t, rss, fds in daemon.samples:
        runs.setdefault(run, []).append((t, rss, fds))
    summary = {
        "acquisitions_committed": len(rows),
        "received_copies": len(got_ids),
        "received_unique": len(unique),
        "lost": len(lost),
        "unknown": len(unknown),
        "seq_gaps": len(gaps),
        "duplicates": len(got_ids) - len(unique),
        "archive_mismatch": len(mismatch),
        "archive_missing": len(missing),
        "sigterm_nonzero": daemon.term_failures,
        "unexpected_exits": unexpected,
        "daemon_runs": daemon.runs,
        "subscriber_restarts": sub.restarts,
        "faults": faults,
        "soak_s": round(elapsed),
        "staging_left": len(list((archive / ".staging").iterdir())),
    }
    print(json.dumps(summary, indent=1))
    print("daemon run: samples, RSS MB first→last (max), fds first→last (max)")
    for run, s in sorted(runs.items()):
        if len(s) < 2:
            continue
        print(f"  {run:3d}: {len(s):4d}, {s[0][1] / 1024:6.1f} → {s[-1][1] / 1024:6.1f} "
              f"({max(x[1] for x in s) / 1024:6.1f}), {s[0][2]} → {s[-1][2]} ({max(x[2] for x in s)})")
    longest = max(runs.values(), key=len) if runs else []
    if len(longest) >= 4:
        q = len(longest) // 4
        first = sorted(x[1] for x in longest[:q])[q // 2] / 1024
        last = sorted(x[1] for x in longest[-q:])[q // 2] / 1024
        print(f"longest run: {len(longest)} samples; median RSS of its first quarter {first:.1f} MB, "
              f"of its last quarter {last:.1f} MB; fds {longest[0][2]} → {longest[-1][2]}")
    if mismatch:
        print("archive mismatches:", mismatch[:5])
    if missing:
        print("archive folders missing:", missing[:5])
    if not a.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print("kept", work)
    bad = summary["lost"] or summary["unknown"] or summary["seq_gaps"] or mismatch or daemon.term_failures
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
