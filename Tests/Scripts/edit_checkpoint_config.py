#!/usr/bin/env python3
"""Edits the `config` JSON attribute of a checkpoint in place with h5py, leaving its tensors as
they were: a checkpoint whose configuration no longer describes them.

    python3 Tests/Scripts/edit_checkpoint_config.py CHECKPOINT KEY=VALUE...

KEY is a dotted path into the configuration (`model.codes`, `model.code_dimension`); VALUE is
JSON (`1048576`, `"ema"`). Exits non-zero with a message when a key does not exist.
"""
import json
import sys

import h5py


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: edit_checkpoint_config.py CHECKPOINT KEY=VALUE...")
    with h5py.File(sys.argv[1], "r+") as f:
        config = json.loads(f.attrs["config"])
        for edit in sys.argv[2:]:
            key, _, value = edit.partition("=")
            *parents, name = key.split(".")
            node = config
            for parent in parents:
                node = node.get(parent) if isinstance(node, dict) else None
            if not isinstance(node, dict) or name not in node:
                sys.exit(f"edit_checkpoint_config.py: {sys.argv[1]}: the configuration has no '{key}'")
            node[name] = json.loads(value)
        f.attrs["config"] = json.dumps(config)


if __name__ == "__main__":
    main()
