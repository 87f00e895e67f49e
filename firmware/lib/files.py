# Small file helpers for flash, for the node and the HAL alike: atomic replace (write a
# temporary file, then rename, which littlefs, FAT and POSIX all do atomically) so a power
# cut leaves the old or the new content, never half of it.
import json
import os

_MISSING = object()


def exists(path):
    try:
        os.stat(path)
        return True
    except OSError:
        return False


def makedirs(path):
    part = ""
    for name in path.split("/"):
        part = part + "/" + name if part else name
        if not exists(part):
            os.mkdir(part)


def read_json(path, default=_MISSING):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        if default is _MISSING:
            raise
        return default


def write_atomic(path, data):
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(data)
    try:
        os.rename(tmp, path)
    except OSError:
        # FAT (older ESP32 images) will not rename onto an existing file; littlefs and
        # POSIX replace it atomically and never get here.
        remove(path)
        os.rename(tmp, path)


def write_json(path, obj):
    write_atomic(path, json.dumps(obj).encode())


def remove(path):
    try:
        os.remove(path)
    except OSError:
        pass
