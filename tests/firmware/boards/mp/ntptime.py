# Stand-in ntptime (micropython-lib micropython/net/ntptime/ntptime.py): time() gives the
# seconds since the port's epoch, taken from gmtime(0)[0] (2000 or 1970); an unreachable
# server is an OSError (the socket's timeout).
import network

host = "pool.ntp.org"
timeout = 1


def time():
    import bench
    import time as clock
    if not network.connected() or not bench.get().get("ntp", True):
        raise OSError(110)   # ETIMEDOUT
    unix = clock.real_ns() // 1000000000
    return unix - (946684800 if clock.gmtime(0)[0] == 2000 else 0)
