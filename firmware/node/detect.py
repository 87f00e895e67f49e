# Detection on the node (DESIGN "Node firmware"): thresholds with hysteresis for gas, air
# and water level, a debounced leak probe, manhole tilt relative to the installed angle,
# and an adaptive magnetic baseline for parking. Every detector keeps its state in one
# small list so that it survives deep sleep in RTC memory.

# SPEC 4.3's hysteresis (protocols.thresholds.THRESHOLD_HYSTERESIS, which
# tests/firmware/mp/detect_check.py holds this equal to). Not imported: that module is the
# whole defaults table, and sampling is the phase that needs the most heap.
THRESHOLD_HYSTERESIS = 0.1

# Consecutive agreeing samples before a state changes.
LEAK_DEBOUNCE = 3
PARKING_DEBOUNCE = 2
# How fast the parking baseline follows slow drift (temperature, nearby steel) while the
# bay is empty: an exponential average over ~20 samples.
BASELINE_ALPHA = 0.05


class Threshold:
    """Raised when the value goes above the limit (or below, for battery-low), cleared when
    it comes back past the limit less 10 % (SPEC 4.3), so a hovering value does not flap."""

    def __init__(self, event, field, key, limits, below=False):
        self.event = event
        self.field = field
        self.key = key            # the threshold's name in protocols.thresholds
        self.limit = limits[key]
        self.below = below

    def step(self, value, st):
        # st: [raised]; returns True/False on a change, None otherwise
        h = self.limit * THRESHOLD_HYSTERESIS
        if self.below:
            new = value < self.limit if not st[0] else value < self.limit + h
        else:
            new = value > self.limit if not st[0] else value > self.limit - h
        if new != st[0]:
            st[0] = new
            return new
        return None


def debounce(raw, st, need):
    """st: [state, run]. The state follows raw only after `need` agreeing samples in a row:
    a probe that flickers (spray, a splash) never changes it."""
    if raw == st[0]:
        st[1] = 0
        return None
    st[1] += 1
    if st[1] < need:
        return None
    st[0] = raw
    st[1] = 0
    return raw


class Detection:
    def __init__(self, kind, limits, calibration, state):
        self.kind = kind
        self.cal = calibration
        self.state = state        # dict of lists; lives in RTC memory across deep sleep
        checks = []
        if kind == "air":
            for name in ("pm25", "pm10", "co2", "no2"):
                checks.append(Threshold(name, name, name, limits))
        elif kind == "manhole":
            checks.append(Threshold("tilt", "tilt_deg", "tilt_deg", limits))
            checks.append(Threshold("ch4", "ch4_lel", "ch4_lel", limits))
            checks.append(Threshold("h2s", "h2s_ppm", "h2s_ppm", limits))
            checks.append(Threshold("water-level", "water_level_cm", "water_level_cm", limits))
        checks.append(Threshold("battery-low", "battery_v", "battery_low_v", limits, below=True))
        self.checks = checks
        self.limits = limits

    def set_limits(self, limits):
        """New thresholds from a `set` command take effect at the next sample."""
        self.limits = limits
        for check in self.checks:
            check.limit = limits[check.key]

    def _st(self, name, initial):
        st = self.state.get(name)
        if st is None:
            st = self.state[name] = initial
        return st

    def update(self, fields):
        """Derive the detected fields in place; return [(event, state, value), ...]."""
        events = []
        if self.kind == "parking":
            self._parking(fields, events)
        elif self.kind == "leak":
            self._leak(fields, events)
        elif self.kind == "manhole":
            self._manhole(fields, events)
        for check in self.checks:
            value = fields.get(check.field)
            if value is None:
                continue
            changed = check.step(value, self._st(check.event, [False]))
            if changed is not None:
                events.append((check.event, changed, value))
        return events

    def _parking(self, fields, events):
        if "mag_x" in fields:
            x, y, z = fields["mag_x"], fields["mag_y"], fields["mag_z"]
            level = (x * x + y * y + z * z) ** 0.5
            delta = self.limits["occupied_delta_ut"]
        elif "distance_cm" in fields:
            # Ultrasonic variant: the car's underside is nearer than the empty bay's floor.
            level = -fields["distance_cm"]
            delta = self.cal.get("occupied_delta_cm", 50.0)
        else:
            return
        # st: [occupied, run, baseline]; the first sample of an installed node is the
        # empty bay unless calibration says otherwise.
        st = self._st("park", [False, 0, self.cal.get("baseline_ut", level)])
        shift = abs(level - st[2])
        # Hysteresis: a car must shift the field by the full delta; it has left only when
        # the shift is back under half of it.
        raw = shift > delta if not st[0] else shift > delta * 0.5
        changed = debounce(raw, st, PARKING_DEBOUNCE)
        if not st[0] and shift < delta * 0.5:
            st[2] += BASELINE_ALPHA * (level - st[2])   # follow slow drift while empty
        fields["occupied"] = st[0]
        fields["confidence"] = round(min(1.0, shift / (2 * delta)) if st[0]
                                     else max(0.0, 1.0 - shift / delta), 3)
        if changed is not None:
            events.append(("occupancy", changed, round(shift, 2)))

    def _leak(self, fields, events):
        value = fields.get("conductance")
        if value is None:
            return
        st = self._st("leak", [False, 0])
        limit = self.limits["wet_conductance"]
        raw = value > limit if not st[0] else value > limit * (1 - THRESHOLD_HYSTERESIS)
        changed = debounce(raw, st, LEAK_DEBOUNCE)
        fields["wet"] = st[0]
        if changed is not None:
            events.append(("leak", changed, value))

    def _manhole(self, fields, events):
        acc = fields.pop("_acc", None)
        if acc is not None:
            from drivers.mpu6050 import angle_deg   # loaded by manhole nodes only
            # The installed pose: from calibration, else the first sample after power-on
            # at installation (kept in RTC memory and flash-backed by the caller).
            ref = self.cal.get("tilt_ref") or self._st("ref", list(acc))
            fields["tilt_deg"] = round(angle_deg(acc, ref), 2)
        if "cover_open" in fields:
            st = self._st("cover", [False])
            if fields["cover_open"] != st[0]:
                st[0] = fields["cover_open"]
                events.append(("cover-open", st[0], fields.get("tilt_deg")))
