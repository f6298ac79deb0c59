"""One measurement in its own process, as the remote agent runs it.

``python -m dwnas.measure.job MODEL RESOLUTION SETTINGS_JSON OUT_JSON``; exit status 2 with an
``error: ...`` line for bad input (the agent relays the line), 0 with OUT_JSON written otherwise.
"""

from __future__ import annotations

import json
import sys

from dwnas.errors import DwnasError


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 4:
        print(
            "usage: python -m dwnas.measure.job MODEL RESOLUTION SETTINGS_JSON OUT_JSON",
            file=sys.stderr,
        )
        return 64
    model, resolution, settings_path, out = argv
    from dwnas.io import write_json
    from dwnas.measure.api import measure_file

    try:
        with open(settings_path) as fh:
            settings = json.load(fh)
        write_json(out, measure_file(model, int(resolution), settings))
    except DwnasError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
