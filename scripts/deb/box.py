"""A Debian 12 root with a real systemd, booted in systemd-nspawn, for scripts/test-deb.

Standard library only: scripts/test-deb runs under the host's /usr/bin/python3.

- :func:`ensure_base` builds the root once (debootstrap minbase, then systemd, the
  tools the checks use and the packages' Debian dependencies) and caches it in
  ``~/.cache/llmd-debian-box/base``; a stamp file next to it marks it complete
  and records a hash of its inputs, so a change of the dependency list rebuilds it.
- :class:`Box` boots that root as a container (``--volatile=overlay``: the base is
  never written) in its own cgroups, runs commands in it with ``nsenter`` and a
  clean environment, and powers it off and removes its cgroups when done.

What the host needs and what the container lacks:
- ``--keep-unit`` (nspawn would otherwise ask the host's systemd for a scope) puts nspawn's
  ``payload/`` and ``supervisor/`` cgroups under the caller's: each boot gets its own cgroup
  (in every hierarchy the host mounts), removed after the poweroff.
- ``machinectl`` and ``systemd-run -M`` need a host systemd: commands go in with
  ``nsenter -t <PID 1> -a``, under ``env -i`` so the host's variables stay out.
- ``--private-network``: the container has only its loopback, so the daemon's port never
  meets the host's, and every package it installs must already be in the base.
- No cgroup controller is delegated and there are no BPF cgroup hooks: ``MemoryMax=``,
  ``CPUQuota=``, ``TasksMax=`` and ``IPAddressDeny=`` are accepted but not enforced here.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Sequence

CACHE = Path(os.environ.get("LLMD_BOX_CACHE", Path.home() / ".cache" / "llmd-debian-box"))
SUITE = "bookworm"
MIRROR = os.environ.get("LLMD_BOX_MIRROR", "http://deb.debian.org/debian")
SECURITY_MIRROR = os.environ.get("LLMD_BOX_SECURITY_MIRROR", "http://deb.debian.org/debian-security")
# What every check needs besides the packages' own dependencies. procps gives /bin/kill
# (the unit's ExecReload); passwd gives useradd/usermod; util-linux (essential) gives runuser.
CORE_PACKAGES = ("systemd", "systemd-sysv", "dbus", "python3", "curl", "sqlite3", "procps", "sudo", "passwd")
# Bump when the way the roots are built changes, so cached ones are rebuilt.
RECIPE = "1"
# The environment of every command in the container (nsenter would pass ours through).
CT_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8",
          "TERM=dumb", "DEBIAN_FRONTEND=noninteractive")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def log(msg: str) -> None:
    print(f"# {msg}", flush=True)


def run(cmd: Sequence[str], **kw) -> subprocess.CompletedProcess:
    """A host command; its output goes to ours unless captured."""
    return subprocess.run(list(cmd), check=True, **kw)


# ---------------------------------------------------------------- the base root

def _stamp_read(stamp: Path) -> dict:
    try:
        return json.loads(stamp.read_text())
    except (OSError, ValueError):
        return {}


def _digest(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]


def _remove_tree(path: Path) -> None:
    if path.exists() or path.is_symlink():
        subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=True)


def _chroot_apt(root: Path, *args: str, logf) -> None:
    env = {"PATH": CT_ENV[0][5:], "HOME": "/root", "LANG": "C.UTF-8", "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["chroot", str(root), "apt-get", "-q", "-y", "-o", "APT::Install-Recommends=false", *args],
                   check=True, env=env, stdout=logf, stderr=subprocess.STDOUT)


def _build_core(core: Path, logf) -> None:
    """debootstrap --variant=minbase, then systemd and the tools of the checks."""
    debs = CACHE / "debootstrap-debs"  # downloaded .debs, kept for the next rebuild
    debs.mkdir(parents=True, exist_ok=True)
    log(f"debootstrap {SUITE} from {MIRROR} into {core}")
    subprocess.run(["debootstrap", "--variant=minbase", f"--cache-dir={debs}", SUITE, str(core), MIRROR],
                   check=True, stdout=logf, stderr=subprocess.STDOUT)
    # The container's sources: main, updates and security, as on an up-to-date box (a package
    # built on an updated host may depend on versions only there).
    (core / "etc/apt/sources.list").write_text(
        f"deb {MIRROR} {SUITE} main\n"
        f"deb {MIRROR} {SUITE}-updates main\n"
        f"deb {SECURITY_MIRROR} {SUITE}-security main\n")
    _chroot_apt(core, "update", logf=logf)
    _chroot_apt(core, "dist-upgrade", logf=logf)
    log(f"installing {' '.join(CORE_PACKAGES)}")
    _chroot_apt(core, "install", *CORE_PACKAGES, logf=logf)


def ensure_base(depends: Sequence[str], rebuild: bool = False) -> Path:
    """The base root with ``depends`` (Depends fields, apt-get satisfy syntax) installed; built when needed.

    Two cached layers: ``core`` (minbase, systemd, the tools) and ``base`` (a copy of core
    plus the packages' dependencies), so a change in the dependencies costs a copy and an
    ``apt-get satisfy``, not a new debootstrap. Each has a stamp written last: a build
    that was interrupted leaves no stamp (dpkg may be half-configured) and is redone.
    """
    CACHE.mkdir(parents=True, exist_ok=True)
    core, base = CACHE / "core", CACHE / "base"
    core_stamp, base_stamp = CACHE / "core.stamp", CACHE / "base.stamp"
    core_key = _digest(RECIPE, SUITE, MIRROR, SECURITY_MIRROR, CORE_PACKAGES)
    deps = sorted({d.strip() for d in depends if d.strip()})
    with open(CACHE / "lock", "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)  # a parallel run waits for the build instead of racing it
        logpath = CACHE / "build.log"
        with open(logpath, "a") as logf:
            try:
                if rebuild or _stamp_read(core_stamp).get("key") != core_key or not core.is_dir():
                    core_stamp.unlink(missing_ok=True)
                    base_stamp.unlink(missing_ok=True)
                    _remove_tree(core)
                    _build_core(core, logf)
                    core_stamp.write_text(json.dumps({"key": core_key, "packages": CORE_PACKAGES,
                                                      "built": time.strftime("%Y-%m-%dT%H:%M:%S%z")}) + "\n")
                base_key = _digest(core_key, _stamp_read(core_stamp).get("built"), deps)
                if _stamp_read(base_stamp).get("key") != base_key or not base.is_dir():
                    base_stamp.unlink(missing_ok=True)
                    _remove_tree(base)
                    log(f"base: copying core, then installing the packages' dependencies: {', '.join(deps) or '-'}")
                    tmp = CACHE / "base.tmp"
                    _remove_tree(tmp)
                    run(["cp", "-a", "--reflink=auto", str(core), str(tmp)])
                    if deps:
                        _chroot_apt(tmp, "update", logf=logf)
                        _chroot_apt(tmp, "satisfy", ", ".join(deps), logf=logf)
                    _chroot_apt(tmp, "clean", logf=logf)
                    tmp.rename(base)
                    base_stamp.write_text(json.dumps({"key": base_key, "depends": deps,
                                                      "built": time.strftime("%Y-%m-%dT%H:%M:%S%z")}) + "\n")
            except subprocess.CalledProcessError as exc:
                raise SystemExit(f"test-deb: building the base root failed ({exc}); see {logpath}") from None
    return base


# ---------------------------------------------------------------- a booted container

class Box:
    """One boot of the base root: ``with Box(base, name, binds) as box: box.sh('...')``."""

    def __init__(self, base: Path, name: str, binds: dict[str, str], workdir: Path, keep: bool = False) -> None:
        self.base, self.name, self.binds, self.keep = base, name, binds, keep
        self.log_path = workdir / f"{name}.nspawn.log"
        self.nspawn: subprocess.Popen | None = None
        self.pid1: int | None = None
        self.cgroups = [CGROUP_ROOT / h / name for h in ("systemd", "unified") if (CGROUP_ROOT / h).is_dir()]

    # -- boot and power off

    def _enter_cgroups(self) -> None:  # runs in the child, before exec
        for cg in self.cgroups:
            (cg / "cgroup.procs").write_text(str(os.getpid()))

    def boot(self, timeout: float = 60) -> None:
        for cg in self.cgroups:
            cg.mkdir(exist_ok=True)
        cmd = ["systemd-nspawn", "-D", str(self.base), "--volatile=overlay", "-b", "--register=no", "--keep-unit",
               "--console=passive", "--private-network", "-M", self.name]
        cmd += [f"--bind-ro={src}:{dst}" for src, dst in self.binds.items()]
        self.logf = open(self.log_path, "w")
        # Its own session: a Ctrl-C reaches only us, and we power the container off in order.
        self.nspawn = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.logf, stderr=subprocess.STDOUT,
                                       preexec_fn=self._enter_cgroups, start_new_session=True)
        deadline = time.monotonic() + timeout
        while self.pid1 is None:
            if self.nspawn.poll() is not None:
                raise RuntimeError(f"systemd-nspawn exited ({self.nspawn.returncode}): {self._log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no systemd in the container after {timeout:.0f} s: {self._log_tail()}")
            for child in self._children(self.nspawn.pid):
                try:
                    if Path(f"/proc/{child}/comm").read_text().strip() == "systemd":
                        self.pid1 = child
                except OSError:
                    pass
            time.sleep(0.05)
        while self.run(["test", "-S", "/run/systemd/private"], check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"systemd in the container did not start its manager: {self._log_tail()}")
            time.sleep(0.05)
        state = self.run(["systemctl", "is-system-running", "--wait"], check=False, timeout=timeout).stdout.strip()
        if state != "running":
            failed = self.run(["systemctl", "--failed", "--no-legend", "--plain"], check=False).stdout.strip()
            log(f"{self.name}: system is {state}; failed units: {failed or '-'}")

    @staticmethod
    def _children(pid: int) -> list[int]:
        out: list[int] = []
        for task in Path(f"/proc/{pid}/task").glob("*"):
            try:
                out += [int(p) for p in (task / "children").read_text().split()]
            except OSError:
                pass
        return out

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-2000:]
        except OSError:
            return ""

    def poweroff(self, timeout: float = 60) -> None:
        """Power off, wait for nspawn, remove the cgroups; forceful where the orderly way fails."""
        if self.nspawn is None:
            self._remove_cgroups()
            return
        if self.nspawn.poll() is None and self.pid1 is not None:
            self.run(["systemctl", "poweroff", "--no-block"], check=False, timeout=15)
        try:
            self.nspawn.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            log(f"{self.name}: no poweroff after {timeout:.0f} s; terminating systemd-nspawn")
            self.nspawn.terminate()  # nspawn asks the container's systemd to halt
            try:
                self.nspawn.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.nspawn.kill()
                self.nspawn.wait()
        self.logf.close()
        self._remove_cgroups()
        self.nspawn = None

    def _remove_cgroups(self) -> None:
        for cg in self.cgroups:
            if not cg.exists():
                continue
            for _ in range(50):
                # Anything still in there (a container killed hard) is killed first.
                left = [int(p) for f in cg.rglob("cgroup.procs") for p in f.read_text().split()]
                for pid in left:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                try:
                    for d in sorted((p for p in cg.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                        d.rmdir()
                    cg.rmdir()
                    break
                except OSError:
                    time.sleep(0.1)
            else:
                log(f"could not remove the cgroup {cg}")

    def __enter__(self) -> Box:
        try:
            self.boot()
        except BaseException:
            self.poweroff(timeout=20)
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self.keep:
            log(f"kept {self.name} running: enter it with  "
                f"nsenter -t {self.pid1} -a env -i {' '.join(CT_ENV[:2])} bash")
            log(f"  stop it with  nsenter -t {self.pid1} -a systemctl poweroff; "
                f"while kill -0 {self.nspawn.pid if self.nspawn else 0} 2>/dev/null; do sleep 0.2; done; "
                + "; ".join(f"find {cg} -depth -type d -exec rmdir {{}} \\;" for cg in self.cgroups))
            return
        self.poweroff()

    # -- commands inside

    def run(self, cmd: Sequence[str], check: bool = True, timeout: float = 300, input: str | None = None,
            user: str | None = None) -> subprocess.CompletedProcess:
        """``cmd`` in the container, clean environment, output captured (stderr merged into stdout)."""
        assert self.pid1 is not None
        argv = ["nsenter", "-t", str(self.pid1), "-a", "env", "-i", *CT_ENV]
        if user:
            argv += ["runuser", "-u", user, "--"]
        argv += list(cmd)
        try:
            res = subprocess.run(argv, input=input, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 timeout=timeout, stdin=None if input is not None else subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            out = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
            res = subprocess.CompletedProcess(argv, 124, out + f"\n[timed out after {timeout:.0f} s]")
        if check and res.returncode != 0:
            raise BoxError(cmd, res)
        return res

    def sh(self, script: str, **kw) -> subprocess.CompletedProcess:
        return self.run(["sh", "-c", script], **kw)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.run(["systemctl", "show", "-p", ",".join(props), unit], check=False).stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def monotonic_us(self) -> int:
        """CLOCK_MONOTONIC in µs; the container shares the host's kernel clock (no time namespace)."""
        return time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000


class BoxError(Exception):
    def __init__(self, cmd: Sequence[str], res: subprocess.CompletedProcess) -> None:
        self.cmd, self.res = list(cmd), res
        super().__init__(f"{' '.join(self.cmd)}: exit {res.returncode}: {res.stdout.strip()[-1500:]}")


def host_ok() -> str | None:
    """Why this host cannot run the test, or None."""
    if os.geteuid() != 0:
        return "needs root (debootstrap, systemd-nspawn, cgroups)"
    missing = [t for t in ("debootstrap", "systemd-nspawn", "nsenter", "dpkg-deb") if shutil.which(t) is None]
    if missing:
        return (f"missing {', '.join(missing)}: apt-get install debootstrap systemd-container "
                f"(and lintian for the lintian check)")
    return None


if __name__ == "__main__":  # a manual smoke test: boot the cached base and run a command in it
    b = ensure_base(sys.argv[2:] if len(sys.argv) > 2 else [])
    with Box(b, f"llmdbox{os.getpid()}", {}, Path("/tmp")) as box:
        print(box.sh(sys.argv[1] if len(sys.argv) > 1 else "systemctl is-system-running").stdout)
