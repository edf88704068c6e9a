"""``python -m builder.problems SOURCE [--split S]``: a problem source's quality report, as JSON.

What ``load_problems`` would read from SOURCE and which problems its quality report flags (and
would drop), without building anything: a check to run on a new dataset before a long build.
"""

from __future__ import annotations

import argparse
import json
import sys

from builder.errors import UserError
from builder.problems.sources import load_problems_with_report


def main(argv: list[str] | None = None) -> int:
    """Print SOURCE's quality report (every problem read, nothing dropped) as JSON; 2 on bad input."""
    parser = argparse.ArgumentParser(prog="python -m builder.problems", description=__doc__.splitlines()[0])
    parser.add_argument("source", help="'humaneval', 'mbpp', a local save_to_disk/Parquet/JSONL path, "
                                       "or a Hub dataset id")
    parser.add_argument("--split", default=None, help="only this split (comma-separated for several)")
    args = parser.parse_args(argv)
    try:
        _, report = load_problems_with_report(args.source, split=args.split, drop_untested=False)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(report.to_dict(), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
