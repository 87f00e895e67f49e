"""Size of the compiled firmware (mpy-cross .mpy files plus main.py), as it goes into a
board's flash: the whole bundle, and what one platform actually needs (a board carries
only its own HAL).

    .venv/bin/python bench/firmware_size.py
"""

from __future__ import annotations

import sys
import tempfile
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hil.sim_build import build_bundle  # noqa: E402

OTHER_HALS = {
    "esp32": ("hal/rp2.mpy", "hal/sim"),
    "rp2": ("hal/esp32.mpy", "hal/sim"),
    "sim": ("hal/esp32.mpy", "hal/rp2.mpy", "hal/board.mpy"),
}


def main() -> None:
    bundle = build_bundle(Path(tempfile.mkdtemp()) / "bundle")
    files = {
        p.relative_to(bundle).as_posix(): p.stat().st_size
        for p in bundle.rglob("*")
        if p.is_file() and (p.suffix == ".mpy" or p.name == "main.py")
    }
    by_folder: dict[str, int] = defaultdict(int)
    for rel, size in files.items():
        by_folder[rel.split("/")[0] if "/" in rel else "(root)"] += size
    print(f"{'folder':12} {'bytes':>8}")
    for folder, size in sorted(by_folder.items()):
        print(f"{folder:12} {size:>8}")
    total = sum(files.values())
    print(f"{'whole bundle':12} {total:>8}  ({total / 1024:.1f} KB)")
    for platform, skip in OTHER_HALS.items():
        size = sum(s for rel, s in files.items() if not rel.startswith(skip))
        print(f"{platform + ' image':12} {size:>8}  ({size / 1024:.1f} KB)")
    print("(goal: under 96 KB)")


if __name__ == "__main__":
    main()
