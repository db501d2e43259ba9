"""Private PostgreSQL and Redis servers for the fault suite, on their own ports in a temporary directory.

The suite stops and restarts them; the machine's shared servers (5432, 6379), which other test runs use, are never
touched. PostgreSQL comes from the machine's own binaries (initdb + pg_ctl); initdb refuses to run as root, so as
root the cluster belongs to the `postgres` user.
"""
from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}")) or [shutil.which(name) or ""]
    if not found[-1]:
        raise RuntimeError(f"PostgreSQL's {name} is not installed")
    return found[-1]


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up in {timeout}s")
        time.sleep(0.1)


class PrivatePostgres:
    """A throwaway cluster (fsync off, trust auth on 127.0.0.1) with one database."""

    def __init__(self, database: str = "faults") -> None:
        import tempfile

        # its own directory under /tmp: pytest's are private to root, and the cluster's user must reach it
        root = Path(tempfile.mkdtemp(prefix="appliance-faults-pg-"))
        self.root, self.database = root, database
        self.data = root / "pgdata"
        self.port = free_port()
        self.user = "postgres" if os.geteuid() == 0 else None  # initdb will not run as root
        if self.user:
            pw = pwd.getpwnam(self.user)
            os.chown(root, pw.pw_uid, pw.pw_gid)
        self._run([_pg_bin("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync",
                   "-E", "UTF8"])
        self.start()
        subprocess.run([_pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                        database], check=True)

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{self.database}"

    def _run(self, argv: list[str]) -> None:
        prefix = ["runuser", "-u", self.user, "--"] if self.user else []
        subprocess.run(prefix + argv, check=True, stdout=subprocess.DEVNULL, cwd=self.root)

    def start(self) -> None:
        self._run([_pg_bin("pg_ctl"), "-D", str(self.data), "-l", str(self.root / "postgres.log"), "-w", "start",
                   "-o", f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                         f"-c max_connections=200"])

    def stop(self) -> None:
        """An immediate shutdown: open connections are cut, as when the server crashes."""
        self._run([_pg_bin("pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop"])

    def up(self) -> bool:
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
            return True
        except OSError:
            return False

    def query(self, sql: str, *params) -> list[tuple]:
        import psycopg

        with psycopg.connect(self.url.replace("postgres://", "postgresql://"), autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()

    def destroy(self) -> None:
        if self.up():
            self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


class PrivateRedis:
    """`redis-server --port N --save ''`: no persistence, so a restart is an empty Redis (the worst case)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.process: subprocess.Popen | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.root)], stdout=open(self.root / "redis.log", "ab"), stderr=subprocess.STDOUT)
        _wait(self.up, 20, "redis-server")

    def stop(self) -> None:
        """SIGKILL: clients see their connections reset, as when Redis crashes."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def up(self) -> bool:
        try:
            return self.client().ping()
        except Exception:
            return False

    def client(self):
        import redis

        return redis.Redis.from_url(self.url, socket_timeout=2)
