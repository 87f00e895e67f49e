"""How long provisioning takes on a virtual board, step by step, with the real firmware.

Prints: bundle build time and size; per flash (copy + hash read-back + reset + birth
message): total seconds, copy rate; `node info` seconds. A virtual board's pty is far faster
than a 115200-baud UART, so on a real ESP32 the copy takes longer: the copy rate printed
is the raw-REPL round-trip bound, not the UART's.

    .venv/bin/python bench/provision_flash.py [--flashes 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from field import bundle as bundles  # noqa: E402
from field.flash import copy_bundle, expected_hashes, flash_node, verify  # noqa: E402
from field.info import read_info  # noqa: E402
from field.node_config import parse  # noqa: E402
from field.serial_board import SerialBoard  # noqa: E402
from hil.boards.virtual import VirtualBoard  # noqa: E402
from hil.services import MosquittoServer  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flashes", type=int, default=3, help="flashes to time (default: 3)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-provision-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        built = bundles.build(root / "bundle")
        build_s = time.perf_counter() - started
        size = sum(built.path(n).stat().st_size for n in built.files)
        print(f"bundle {built.version}: {len(built.files)} files, {size} bytes, built in {build_s:.2f} s")
        broker = MosquittoServer(root / "mosquitto").start()
        board = VirtualBoard(root / "board" / "flash", workdir=root / "board").start()
        try:
            config = parse(
                {
                    "node": "p-9001",
                    "district": "xuhui",
                    "zone": "caohejing",
                    "kind": "parking",
                    "platform": "sim",
                    "interval_s": 5,
                    "broker": {"host": broker.host, "port": broker.port},
                },
                "bench",
            )
            copy_s, verify_s, totals, info_s = [], [], [], []
            for _ in range(args.flashes):
                with SerialBoard(board.port) as sb:
                    sb.enter_raw_repl(soft_reset=True)
                    t0 = time.perf_counter()
                    copy_bundle(sb, built, config)
                    t1 = time.perf_counter()
                    verify(sb, expected_hashes(built, config))
                    t2 = time.perf_counter()
                copy_s.append(t1 - t0)
                verify_s.append(t2 - t1)
                outcome = flash_node(board.port, config, built, timeout=30)
                if not outcome.live:
                    raise SystemExit(f"flash failed: {outcome.reason}")
                totals.append(outcome.seconds)
                t3 = time.perf_counter()
                read_info(board.port)
                info_s.append(time.perf_counter() - t3)
            med = statistics.median
            print(
                f"copy bundle + config:   median {med(copy_s):.2f} s "
                f"({size / med(copy_s) / 1024:.1f} KiB/s over the raw REPL)"
            )
            print(f"hash read-back:         median {med(verify_s):.2f} s ({len(built.files) + 1} files)")
            print(
                f"flash to live (total):  median {med(totals):.2f} s, max {max(totals):.2f} s "
                f"over {args.flashes} flashes"
            )
            print(f"node info:              median {med(info_s):.2f} s")
        finally:
            board.stop()
            broker.stop()


if __name__ == "__main__":
    main()
