"""For tests and the demo only: a stand-in for MicroPython's `network` module.

The link state is the simulator's to set (`SimNetwork.link_up`), which is
how tests cut a device's Wi-Fi; sockets themselves are the host's real ones.
"""

from __future__ import annotations


class SimNetwork:
    STA_IF = 0
    AP_IF = 1
    STAT_GOT_IP = 1010

    def __init__(self):
        self.link_up = True
        self.connects = 0
        self.disconnects = 0
        self.rssi = -55  # what WLAN.status("rssi") reports (None: the port cannot tell)
        network = self

        class WLAN:
            def __init__(self, interface=0):
                self.interface = interface
                self._active = False

            def active(self, flag=None):
                if flag is None:
                    return self._active
                self._active = bool(flag)
                return None

            def connect(self, ssid=None, password=None):
                network.connects += 1

            def disconnect(self):
                network.disconnects += 1

            def isconnected(self):
                return self._active and network.link_up

            def status(self, param=None):
                if param == "rssi":
                    if network.rssi is None:
                        raise ValueError("unknown status param")
                    return network.rssi
                return network.STAT_GOT_IP if self.isconnected() else 0

        self.WLAN = WLAN
