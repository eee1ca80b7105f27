"""For tests and the demo only: a keypad's UART on a pseudo-terminal.

The simulated keypad's end of the window-PC serial link is the master side of
a pty; the slave side (/dev/pts/N) is what `hcp window --port` opens, as it
would open /dev/ttyUSB0 on a window PC. Same methods as machine.UART as
device/link.py uses them: any(), read(n), write(data), never blocking.
"""

from __future__ import annotations

import os
import select
import tty


class PtyUART:
    def __init__(self):
        self.master, self._slave = os.openpty()
        tty.setraw(self._slave)  # bytes as they are: no echo, no line editing
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self._slave)  # keep the slave open: no EIO before a reader comes
        self.read_bytes = 0
        self.written_bytes = 0

    def any(self):
        readable, _, _ = select.select([self.master], [], [], 0)
        return 256 if readable else 0

    def read(self, n):
        try:
            data = os.read(self.master, n)
        except (BlockingIOError, OSError):
            return None
        self.read_bytes += len(data)
        return data or None

    def write(self, data):
        try:
            n = os.write(self.master, data)
        except BlockingIOError:  # nobody reads the other end and its buffer is full
            return 0
        self.written_bytes += n
        return n

    def close(self):
        for fd in (self.master, self._slave):
            try:
                os.close(fd)
            except OSError:
                pass
