"""Write a named data set into a records directory, or verify one (``nnjax.data.records``).

    python -m nnjax.data.records write --data digits --out /tmp/digits_rec   # any --data that loads offline
    python -m nnjax.data.records write --data fashion_mnist --out /data/fmnist_rec --shard-mb 64
    python -m nnjax.data.records verify /tmp/digits_rec

``write`` loads ``--data`` as every experiment does (``nnjax.data.load_dataset``) and writes its train and
test splits with a progress bar; ``verify`` re-reads every record against the hashes in ``records.json``.
The last stdout line is one JSON object describing the directory. Known errors are one line on stderr and
exit code 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from nnjax.cli import setup_logging
from nnjax.data import records
from nnjax.data.registry import RECORDS_PREFIX, load_dataset
from nnjax.errors import ConfigError, NnjaxError

log = logging.getLogger("nnjax.data.records")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nnjax.data.records", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    write = commands.add_parser("write", help="write a data set's train and test splits as ArrayRecord shards")
    write.add_argument("--data", required=True, help="a data set name that --data accepts (e.g. digits, mnist, auto)")
    write.add_argument("--out", required=True, help="the new records directory")
    write.add_argument("--data-dir", default=None, help="tensorflow-datasets directory, as for the experiments")
    write.add_argument("--download", action="store_true", help="let tensorflow-datasets download the data set")
    write.add_argument("--shard-mb", type=float, default=records.SHARD_BYTES / 2**20,
                       help=f"MiB of records per shard (default {records.SHARD_BYTES >> 20})")
    verify = commands.add_parser("verify", help="re-read every record of a records directory against its hashes")
    verify.add_argument("directory")
    return parser


def _summary(opened: records.Records) -> dict:
    files = [path for split in opened.splits.values() for path in split.files]
    return {
        "directory": opened.directory, "data": opened.name, "fingerprint": opened.fingerprint,
        **{f"{name}_examples": len(split) for name, split in opened.splits.items()},
        "bytes": sum(os.path.getsize(f) for f in files), "shards": len(files),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command of ``argv``; returns the exit code (2 with one stderr line for a known error)."""
    args = _parser().parse_args(argv)
    setup_logging()
    try:
        if args.command == "write":
            if args.data.startswith(RECORDS_PREFIX):
                raise ConfigError(f"--data {args.data} is a records directory already; name the data set it holds")
            if args.shard_mb <= 0:
                raise ConfigError(f"--shard-mb must be > 0, got {args.shard_mb}")
            data = load_dataset(args.data, args.data_dir, args.download)
            records.write_records(
                args.out, {name: records.chunks_of(getattr(data, name)) for name in records.SPLITS}, data.name,
                data.source, data.num_classes, shard_bytes=int(args.shard_mb * 2**20),
            )
            opened = records.open_records(args.out)
            log.info("wrote %s (%s) into %s", data.name, data.source, opened.directory)
        else:
            opened = records.verify(args.directory)
            log.info("%s: every record matches its hash", opened.directory)
    except NnjaxError as err:
        sys.stderr.write(f"nnjax.data.records: error: {err}\n")
        return 2
    print(json.dumps(_summary(opened)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
