# HC-SR04 ultrasonic ranger: a 10 us trigger pulse, then an echo pulse whose width is the
# round trip; the datasheet's formula is distance_cm = echo_us / 58. Range 2..400 cm; no
# echo within ~38 ms means nothing in range.
ECHO_TIMEOUT_US = 30000
MAX_CM = 400


def distance_cm(echo_us):
    """Echo width -> distance in cm, or None (time_pulse_us gives -1/-2 on timeout)."""
    if echo_us is None or echo_us < 0:
        return None
    cm = echo_us / 58
    return cm if 2 <= cm <= MAX_CM else None


class HCSR04:
    def __init__(self, ranger):
        # ranger.echo_us(timeout_us): the HAL sends the trigger and times the echo.
        self.ranger = ranger

    def read(self):
        return distance_cm(self.ranger.echo_us(ECHO_TIMEOUT_US))
