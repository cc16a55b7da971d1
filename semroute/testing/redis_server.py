"""``RedisServer``: a real ``redis-server`` on a free loopback port, for tests and benchmarks.

It runs the Debian/upstream binary in a private directory, with the append-only file on
(``appendfsync always`` by default, so a killed server loses nothing the client saw
acknowledged) and RDB snapshots off. ``kill()`` simulates a crash; ``start()`` again brings the
same server back on the same port with the same data. It is not a Redis client or a fake.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from ..errors import ConfigError

__all__ = ["RedisServer", "redis_server_binary"]


def redis_server_binary() -> str | None:
    """The ``redis-server`` on PATH, or None (tests skip without it)."""
    return shutil.which("redis-server")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A private ``redis-server``. ``url`` connects to it; ``password`` turns ``requirepass`` on."""

    def __init__(self, *, password: str | None = None, appendfsync: str = "always",
                 directory: str | Path | None = None, startup_timeout_s: float = 10.0) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise ConfigError("redis-server is not installed (Debian: apt-get install redis-server)")
        self.binary = binary
        self.password = password
        self.appendfsync = appendfsync
        self.port = _free_port()
        self._own_dir = directory is None
        self.directory = Path(tempfile.mkdtemp(prefix="semroute-redis-") if directory is None else directory)
        self.startup_timeout_s = startup_timeout_s
        self._proc: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> RedisServer:
        """Start (or restart) the server and return once it accepts connections."""
        if self.running:
            return self
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory),
                "--save", "", "--appendonly", "yes", "--appendfsync", self.appendfsync,
                "--logfile", "", "--daemonize", "no", "--protected-mode", "yes"]
        if self.password:
            args += ["--requirepass", self.password]
        self._proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self._await_ready()
        return self

    def _await_ready(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        seen: list[str] = []
        timer = _Timer(self.startup_timeout_s, self._proc)
        try:
            for line in self._proc.stdout:  # the server says when it is ready: no polling, no sleep
                seen.append(line)
                if "Ready to accept connections" in line:
                    break
        finally:
            timer.cancel()
        if not self.running or not any("Ready to accept connections" in line for line in seen):
            self.stop()
            raise RuntimeError("redis-server did not start:\n" + "".join(seen[-20:]))
        # Keep reading its output in the background so a full pipe never blocks the server.
        import threading

        threading.Thread(target=self._drain, args=(self._proc,), daemon=True).start()

    @staticmethod
    def _drain(proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for _line in proc.stdout:
            pass

    def kill(self) -> None:
        """Crash the server (SIGKILL): no shutdown save, connections reset."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.send_signal(signal.SIGKILL)
            self._proc.wait()
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._proc = None

    def stop(self) -> None:
        """Stop the server (a graceful SIGTERM), keeping its data directory."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait()
            if self._proc.stdout is not None:
                self._proc.stdout.close()
            self._proc = None

    def close(self) -> None:
        """Stop the server and remove its directory (when this object created it)."""
        self.stop()
        if self._own_dir:
            shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class _Timer:
    """Kill a server that has not said it is ready within ``timeout_s`` (ends the stdout loop)."""

    def __init__(self, timeout_s: float, proc: subprocess.Popen[str]) -> None:
        import threading

        self._timer = threading.Timer(timeout_s, proc.kill)
        self._timer.daemon = True
        self._timer.start()

    def cancel(self) -> None:
        self._timer.cancel()
