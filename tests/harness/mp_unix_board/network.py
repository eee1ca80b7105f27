# For tests only: a stand-in for MicroPython's `network` module on the unix
# port, which has none. The link is the test script's to set (set_link);
# sockets are the port's real ones, so "connected" means the host's network.

STA_IF = 0
AP_IF = 1
STAT_IDLE = 0
STAT_GOT_IP = 1010

_link_up = True
connects = 0  # how often the firmware asked to join a network


def set_link(up):
    """Cut (False) or restore (True) the Wi-Fi link that WLAN reports."""
    global _link_up
    _link_up = bool(up)


class WLAN:
    def __init__(self, interface=STA_IF):
        self.interface = interface
        self._active = False

    def active(self, flag=None):
        if flag is None:
            return self._active
        self._active = bool(flag)
        return None

    def connect(self, ssid=None, password=None):
        global connects
        connects += 1

    def isconnected(self):
        return self._active and _link_up

    def status(self, param=None):
        if param == "rssi":
            return -55
        return STAT_GOT_IP if self.isconnected() else STAT_IDLE
