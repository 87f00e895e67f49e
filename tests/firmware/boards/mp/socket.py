# Stand-in socket: the unix port's sockets with the option numbers of the chip's stack.
# rp2 (extmod/modlwip.c): TCP_NODELAY is lwIP's TF_NODELAY flag (0x40, lwip/tcp.h), and
# setsockopt() looks at the option's number only (not the level): any other number prints
# "Warning: lwip.setsockopt() not implemented" and does nothing. ESP32
# (ports/esp32/modsocket.c): lwIP's socket API, IPPROTO_TCP 6 and TCP_NODELAY 1, the
# numbers Linux uses too.
# lwIP's setsockopt() is modelled on a subclass of the unix socket, which the unix port's
# asyncio streams do not read through (a connection made with it never sees its
# CONNACK): only a bench with "lwip_setsockopt": true gets it, for the test of the option.
import sys

_path = sys.path[:]
sys.path.clear()
try:
    import socket as _real    # the unix port's built-in socket (an extensible module)
    from socket import *      # noqa: F403
finally:
    sys.path.extend(_path)

import bench  # noqa: E402 (after the built-in socket is in)

IPPROTO_TCP = 6
if bench.CHIP == "rp2":
    TCP_NODELAY = 0x40

if bench.CHIP == "rp2" and bench.get().get("lwip_setsockopt"):
    class socket(_real.socket):
        def setsockopt(self, level, option, value):
            if option == TCP_NODELAY:
                super().setsockopt(6, 1, value)   # Linux: IPPROTO_TCP, TCP_NODELAY
                bench.log("tcp nodelay %d" % value)
            else:
                print("Warning: lwip.setsockopt() not implemented")
elif bench.CHIP != "rp2":
    TCP_NODELAY = 1
