# Sensors read through an ADC: gas (CH4 pellistor/NDIR module, H2S electrochemical cell
# behind a transimpedance amplifier, NO2 likewise), the leak probe (conductance) and a
# pressure water-level probe. read_u16() gives 0..65535 on every MicroPython port.
#
# Calibration per channel: value = (counts - zero) * span, floored at 0. `zero` is the
# count in clean air / a dry probe / an empty well; `span` the units per count, from a
# calibration gas (or a known depth). Defaults put the full scale at the catalog's limit.
DEFAULTS = {
    "ch4": {"zero": 6554, "span": 100.0 / 58981},     # 0..100 %LEL over 10..100 % of range
    "h2s": {"zero": 6554, "span": 500.0 / 58981},     # 0..500 ppm
    "no2": {"zero": 6554, "span": 10000.0 / 58981},   # 0..10000 ppb
    "level": {"zero": 6554, "span": 1000.0 / 58981},  # 0..1000 cm
    "leak": {"zero": 0, "span": 1.0 / 16},            # 12-bit conductance counts
}


def calibration(name, overrides=None):
    cal = dict(DEFAULTS[name])
    if overrides and name in overrides:
        cal.update(overrides[name])
    return cal


def convert(counts, cal):
    value = (counts - cal["zero"]) * cal["span"]
    return value if value > 0 else 0.0


def counts_for(value, cal):
    """The inverse of convert: what the ADC reads at a value (for the sim's world)."""
    return max(0, min(65535, int(value / cal["span"] + cal["zero"] + 0.5)))


class AnalogSensor:
    def __init__(self, adc, cal, samples=4):
        self.adc = adc
        self.cal = cal
        self.samples = samples

    def read(self):
        # Average a few conversions: ESP32's ADC is noisy by tens of counts.
        total = 0
        for _ in range(self.samples):
            total += self.adc.read_u16()
        return convert(total // self.samples, self.cal)


def probe(bus, name, overrides=None):
    """The AnalogSensor on the HAL's ADC channel `name`, calibrated."""
    return AnalogSensor(bus.adc(name), calibration(name, overrides))
