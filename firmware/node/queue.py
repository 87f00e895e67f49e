# The offline queue in flash: bounded, ordered, replayed in order, and it survives reset
# and power loss.
#
# Layout: a folder of numbered segment files, each holding up to SEGMENT lines (one
# record per line), and a `head` file "SEGMENT LINE" naming the oldest record not yet
# delivered. A push appends one line to the last segment; delivering advances the head
# (written atomically) and deletes segments left behind. Nothing is ever rewritten in
# place, so a power cut costs at most the line being written (a torn line, cut off at
# the next start).
import json
import os

import files

SEGMENT = 32


class FlashQueue:
    def __init__(self, folder, max_items):
        self.folder = folder
        self.max_items = max_items
        self.dropped = 0          # records dropped (oldest first) because the queue was full
        files.makedirs(folder)
        head = files.read_json(folder + "/head", [0, 0])
        self._head_seg, self._head_line = head[0], head[1]
        segs = []
        for name in os.listdir(folder):
            if name.isdigit():
                num = int(name)
                if num < self._head_seg:
                    files.remove(self._path(num))   # fully delivered before a power cut
                else:
                    segs.append(num)
        segs.sort()
        self._segs = [[num, self._count_lines(num)] for num in segs]
        if not self._segs or self._segs[0][0] != self._head_seg:
            self._head_seg = self._segs[0][0] if self._segs else self._head_seg
            self._head_line = 0
        self.count = sum(s[1] for s in self._segs) - self._head_line
        if self.count < 0:
            self.count = 0

    def _path(self, num):
        return "%s/%d" % (self.folder, num)

    def _count_lines(self, num):
        path = self._path(num)
        with open(path, "rb") as f:
            data = f.read()
        if data and not data.endswith(b"\n"):
            # A torn write from a power cut: keep the complete lines only.
            data = data[:data.rfind(b"\n") + 1]
            files.write_atomic(path, data)
        return data.count(b"\n")

    def __len__(self):
        return self.count

    def push(self, record):
        """Append one record: bytes without a newline, or an object, written as JSON
        straight into the file (no string of it is built: the heap is the budget).
        Returns how many old records were dropped to make room (0 or 1)."""
        dropped = 0
        if self.count >= self.max_items:
            self.pop(1)
            self.dropped += 1
            dropped = 1
        if not self._segs or self._segs[-1][1] >= SEGMENT:
            num = self._segs[-1][0] + 1 if self._segs else self._head_seg
            self._segs.append([num, 0])
        tail = self._segs[-1]
        with open(self._path(tail[0]), "a") as f:
            if type(record) is bytes:
                f.write(record)
            else:
                json.dump(record, f)
            f.write("\n")
        tail[1] += 1
        self.count += 1
        return dropped

    def peek(self, n, max_bytes=4096):
        """Up to n oldest records (bytes), at most max_bytes in all (at least one)."""
        out = []
        size = 0
        skip = self._head_line
        for num, lines in self._segs:
            if len(out) >= n:
                break
            with open(self._path(num), "rb") as f:
                for i in range(lines):
                    line = f.readline()
                    if i < skip:
                        continue
                    line = line[:-1]
                    if out and size + len(line) > max_bytes:
                        return out
                    out.append(line)
                    size += len(line)
                    if len(out) >= n:
                        break
            skip = 0
        return out

    def pop(self, n):
        """Mark the n oldest records delivered."""
        n = min(n, self.count)
        self.count -= n
        line = self._head_line + n
        # Delete segments consumed to the end, except a last one still being appended to.
        while self._segs and line >= self._segs[0][1] and (
                len(self._segs) > 1 or self._segs[0][1] >= SEGMENT):
            num, lines = self._segs.pop(0)
            line -= lines
            self._head_seg = self._segs[0][0] if self._segs else num + 1
            # Head first, file second: a cut in between leaves a stale segment that the
            # next start deletes, never a head pointing into a missing file.
            files.write_json(self.folder + "/head", [self._head_seg, line])
            files.remove(self._path(num))
        self._head_line = line
        files.write_json(self.folder + "/head", [self._head_seg, self._head_line])
