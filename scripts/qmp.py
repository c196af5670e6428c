#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Minimal QMP client (stdlib only): greeting, qmp_capabilities, commands.

Every read has a timeout; asynchronous {"event": ...} messages are skipped while
waiting for a command's {"return": ...} (they are kept in .events).
"""
import json
import socket
import time


class QMPError(Exception):
    pass


class QMP:
    def __init__(self, path, timeout=10.0):
        self.timeout = timeout
        self.events = []
        self._buf = b""
        deadline = time.monotonic() + timeout
        while True:  # QEMU creates the socket shortly after it starts
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.settimeout(timeout)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise QMPError(f"cannot connect to QMP socket {path}")
                time.sleep(0.05)
        greeting = self._read_msg()
        if "QMP" not in greeting:
            raise QMPError(f"unexpected greeting: {greeting}")
        self.execute("qmp_capabilities")

    def _read_msg(self):
        deadline = time.monotonic() + self.timeout
        while b"\n" not in self._buf:
            if time.monotonic() > deadline:
                raise QMPError("timeout waiting for QMP")
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                raise QMPError("timeout waiting for QMP") from None
            if not chunk:
                raise QMPError("QMP connection closed")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def _read_return(self):
        while True:
            msg = self._read_msg()
            if "event" in msg:
                self.events.append(msg)
            elif "error" in msg:
                raise QMPError(msg["error"].get("desc", str(msg)))
            elif "return" in msg:
                return msg["return"]

    def send(self, command, arguments=None):
        msg = {"execute": command}
        if arguments:
            msg["arguments"] = arguments
        self.sock.sendall(json.dumps(msg).encode() + b"\n")

    def execute(self, command, arguments=None):
        self.send(command, arguments)
        return self._read_return()

    def inject_nmi(self):
        self.execute("inject-nmi")

    def inject_nmi_burst(self, count, batch=100):
        """Back-to-back NMIs: commands pipelined in batches (reading the replies
        between batches keeps both socket buffers from filling)."""
        done = 0
        while done < count:
            n = min(batch, count - done)
            self.sock.sendall(b'{"execute":"inject-nmi"}\n' * n)
            for _ in range(n):
                self._read_return()
            done += n

    def close(self):
        self.sock.close()
