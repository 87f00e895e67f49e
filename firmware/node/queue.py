# The offline queue in flash: bounded, ordered, replayed in order, and it survives reset
# and power loss.
#
# Layout: a folder of numbered segment files, each holding up to SEGMENT lines (one
# record per line), and a `head` file [SEGMENT, LINE, SENT, NEXT] naming the oldest record
# still kept and two counts of records from there: SENT have been sent at least once (the
# broker acknowledged them), and sending goes on at NEXT (0 after a rewind: everything is
# sent again). A push appends one line to the last segment; pop advances the head and
# save() writes it atomically; a segment left behind is deleted once the head is written.
# Nothing is ever rewritten in place, so a power cut costs at most the line being written
# (a torn line, cut off at the next start). A head written late is harmless: records that
# come back after a cut are sent again, and receivers deduplicate on identity; so the
# node writes it once for many publishes and receipts, and at once only when a full queue
# drops a record, which is counted and must stay dropped. The link moves `next` and
# `sent` as it sends, node/receipts.py sets `next` back to 0 for a resend; both set
# `dirty` for save().
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
        head = files.read_json(folder + "/head", [0, 0]) + [0, 0]
        self._head_seg, self._head_line, self.sent, self.next = head[:4]
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
            self._head_line = self.sent = self.next = 0
        self.count = max(0, sum(s[1] for s in self._segs) - self._head_line)
        self.sent = min(self.sent, self.count)
        self.next = min(self.next, self.sent)
        self.dirty = False

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
        When full, the oldest record makes room: returns 1 if it had never been sent
        (lost for good), else 0 (the broker may hold it, and receivers count it if it
        never arrives)."""
        dropped = 0
        if self.count >= self.max_items:
            dropped = 0 if self.sent else 1
            self.pop(1)
            self.dropped += 1
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

    def peek(self, n, max_bytes=4096, skip=0):
        """Up to n records from the skip-th on, at most max_bytes in all (at least one)."""
        out = []
        size = 0
        skip += self._head_line
        for num, lines in self._segs:
            if len(out) >= n:
                break
            if skip >= lines:
                skip -= lines
                continue
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

    def pop(self, n, save=True):
        """Take the n oldest records off the queue (confirmed, or dropped when full).
        save=False leaves writing the head to a later save()."""
        n = min(n, self.count)
        if not n:
            return
        self.count -= n
        self.sent = max(0, self.sent - n)
        self.next = max(0, self.next - n)
        self._head_line += n
        self.dirty = True
        # Segments consumed to the end go, except a last one still being appended to.
        segs = self._segs
        while segs and self._head_line >= segs[0][1] and (len(segs) > 1 or segs[0][1] >= SEGMENT):
            num, lines = segs.pop(0)
            self._head_line -= lines
            self._head_seg = segs[0][0] if segs else num + 1
            # Head first, file second: a cut in between leaves a stale segment that the
            # next start deletes, never a head pointing into a missing file.
            self.save()
            files.remove(self._path(num))
        if save:
            self.save()

    def save(self):
        """Write the head, if it changed."""
        if self.dirty:
            files.write_json(self.folder + "/head",
                             [self._head_seg, self._head_line, self.sent, self.next])
            self.dirty = False

