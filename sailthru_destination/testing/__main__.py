"""Run the fake Sailthru standalone: ``python -m sailthru_destination.testing --port 8080``.

For hosts written in other languages, or for trying the library by hand. Prints the URL and
serves until Ctrl-C (or SIGTERM).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from ._fake import FakeSailthru

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m sailthru_destination.testing",
        description="Serve a fake Sailthru API (and page-view tracking endpoint) over HTTP.",
    )
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--api-key", default="test-key", help="the API key it accepts")
    parser.add_argument("--api-secret", default="test-secret", help="the secret it verifies")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds slept per request")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Serve until interrupted; 0 on a clean stop."""
    args = _parser().parse_args(argv)
    stop = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _on_signal)
    fake = FakeSailthru(
        api_key=args.api_key, api_secret=args.api_secret, host=args.host, port=args.port,
        latency=args.latency, seed=args.seed,
    )
    with fake:
        sys.stdout.write(f"Fake Sailthru listening on {fake.url} (api key {args.api_key})\n")
        sys.stdout.write("Press Ctrl-C to stop.\n")
        sys.stdout.flush()
        try:
            while not stop.wait(0.2):
                pass
        except KeyboardInterrupt:
            pass
    sys.stdout.write("Fake Sailthru stopped.\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
