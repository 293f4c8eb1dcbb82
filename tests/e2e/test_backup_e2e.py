"""llmctl backup and restore against the real daemon (SQLite's online backup API while it serves), a
restore the daemon refuses, and a database from a newer llmd refused at start."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import time

import pytest
from daemonproc import DaemonProcess, llmd_bin

pytestmark = pytest.mark.e2e


def llmctl(d: DaemonProcess, *args: str, **kw) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMD_", "LLMCTL_"))}
    return subprocess.run([llmd_bin("llmctl"), "--socket", str(d.socket_path), *args], capture_output=True,
                          text=True, timeout=180, env=env, **kw)


def key_names(d: DaemonProcess) -> set[str]:
    return {k["name"] for k in json.loads(llmctl(d, "keys", "list", "--json").stdout)["keys"]}


def test_backup_restore_and_refusals(short_tmp):
    d = DaemonProcess(short_tmp).start()
    try:
        d.wait_loaded()
        assert llmctl(d, "keys", "create", "--name", "before", "--scope", "inference").returncode == 0
        copy = short_tmp / "copy.db"
        p = llmctl(d, "backup", str(copy))
        assert p.returncode == 0, p.stderr
        assert "backed up" in p.stdout
        con = sqlite3.connect(copy)
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert con.execute("SELECT count(*) FROM api_keys WHERE name = 'before'").fetchone() == (1,)
        con.close()

        # what happens after the backup is what a restore takes back
        assert llmctl(d, "keys", "revoke", "before").returncode == 0
        assert llmctl(d, "keys", "create", "--name", "after", "--scope", "inference").returncode == 0

        junk = short_tmp / "junk.db"
        junk.write_bytes(b"not a database" * 1000)
        p = llmctl(d, "restore", str(junk))
        assert p.returncode != 0 and "not an SQLite database" in p.stderr and "Traceback" not in p.stderr
        assert d.proc.poll() is None  # a refused restore changes nothing

        restore = subprocess.Popen([llmd_bin("llmctl"), "--socket", str(d.socket_path), "restore", str(copy)],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={k: v for k, v in os.environ.items() if not k.startswith("LLMD_")})
        assert d.proc.wait(60) == 75  # the daemon stops to put the file in place (systemd restarts it)
        d.stop()
        d = DaemonProcess(short_tmp, port=d.port).start()  # what systemd's Restart=on-failure does
        d.wait_loaded()
        out, err = restore.communicate(timeout=180)
        assert restore.returncode == 0, err
        assert "restored" in out
        names = {k["name"]: k for k in json.loads(llmctl(d, "keys", "list", "--json", "--all").stdout)["keys"]}
        assert "after" not in names and not names["before"].get("revoked_at")
        saved = list((d.state_dir / "backups").glob("*-before-restore.db"))
        assert len(saved) == 1  # the replaced database is kept
        assert "restored the database from a backup" in d.log()
    finally:
        d.stop()

    # a database from a newer llmd: refused in one line, untouched
    con = sqlite3.connect(d.state_dir / "llmd.db")
    con.execute("INSERT INTO schema_migrations(name, applied_at) VALUES ('9999_future', ?)", (time.time(),))
    con.commit()
    con.close()
    d = DaemonProcess(short_tmp, port=d.port).start()
    try:
        assert d.proc.wait(60) == 2
        assert "written by a newer llmd" in d.log() and "9999_future" in d.log()
    finally:
        d.stop()
