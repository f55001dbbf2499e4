"""Print one value of a stack's settings, for the Makefile's operator targets.

python -m tools.stack_value --stack prod host.dockerHost
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from model.loading import ConfigError
from tools.plan import settings_for


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--stack", required=True)
    parser.add_argument("path", help="a dotted camelCase key path, e.g. host.dockerHost")
    args = parser.parse_args(argv)
    try:
        value: Any = settings_for(args.stack).model_dump(by_alias=True, mode="json")
    except (ConfigError, FileNotFoundError) as error:
        print(f"STACK = {args.stack!r}: {error}", file=sys.stderr)
        return 2
    for key in args.path.split("."):
        if not isinstance(value, dict) or key not in value:
            print(f"{args.path}: no such settings key", file=sys.stderr)
            return 2
        value = value[key]
    print(value)
    return 0


if __name__ == "__main__":
    sys.exit(main())
