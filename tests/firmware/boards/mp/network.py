# Stand-in network: one station interface on the bench's access point (bench.json "wifi":
# {"ssid": ..., "up": bool, "rssi": dBm}).
import time

import bench

STA_IF = 0
AP_IF = 1
_JOIN_MS = 50     # association and DHCP, shortened


class WLAN:
    def __init__(self, interface=STA_IF):
        self._active = False
        self._joined = None    # ticks_ms when the connection is up, or None

    def active(self, on=None):
        if on is None:
            return self._active
        self._active = bool(on)
        if on:
            bench.radio = True
        else:
            # The interface goes down; on a Pico W the CYW43 stays powered until deinit()
            # (lib/cyw43-driver, cyw43_wifi_set_up).
            self._joined = None

    def connect(self, ssid=None, key=None, *, bssid=None):
        if not self._active:
            raise OSError("Wifi Not Started")
        bench.radio = True
        wifi = bench.get().get("wifi", {})
        ok = wifi.get("up", True) and wifi.get("ssid") == ssid
        self._joined = time.ticks_add(time.ticks_ms(), _JOIN_MS) if ok else None

    def isconnected(self):
        if self._joined is None or not bench.get().get("wifi", {}).get("up", True):
            return False
        return time.ticks_diff(time.ticks_ms(), self._joined) >= 0

    def disconnect(self):
        self._joined = None

    def status(self, param=None):
        if param == "rssi":
            if not self.isconnected():
                raise OSError("STA must be connected")
            return bench.get().get("wifi", {}).get("rssi", -61)
        return 3 if self.isconnected() else 0

    if bench.CHIP == "rp2":
        def deinit(self):
            # extmod/network_cyw43.c: cyw43_deinit() powers the chip down.
            self._active = False
            self._joined = None
            bench.radio = False


def connected():
    """Whether the bench's network reaches the node (for the stand-in ntptime)."""
    return bench.radio and bench.get().get("wifi", {}).get("up", True)
