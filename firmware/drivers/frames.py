# Serial sensors stream fixed-size frames; a read may start in the middle of one. Find the
# newest complete frame that checks out, scanning back from the end of the buffer.


def last_frame(data, head, size, parse):
    """parse(frame) of the last frame starting with the two bytes `head` that parses; None
    if there is none. A start sequence inside another frame's data, or a frame hit by line
    noise, fails parse and the scan goes on."""
    pos = len(data) - size
    while pos >= 0:
        if data[pos] == head[0] and data[pos + 1] == head[1]:
            try:
                return parse(data[pos:pos + size])
            except ValueError:
                pass
        pos -= 1
    return None
