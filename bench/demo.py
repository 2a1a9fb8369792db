"""What `make demo` prints on this code, for the README: runs it on a fresh store and names the commit.

    python bench/demo.py

Runs `make demo` exactly as a user does (its own commands, a store in a new temporary folder, so no
earlier run is reused) and prints its output under the conditions and the commit it ran at.
"""
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.conditions import conditions  # noqa: E402


def main():
    print(conditions(), flush=True)
    with tempfile.TemporaryDirectory() as store:
        start = time.time()
        done = subprocess.run(["make", "-s", "demo", f"STORE={store}"], cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        print(f"make demo: exit {done.returncode}, {time.time() - start:.0f} s\n")
        print("\n".join("    " + line for line in done.stdout.splitlines()))
        if done.returncode:
            print(done.stderr[-3000:], file=sys.stderr)
            sys.exit(done.returncode)


if __name__ == "__main__":
    main()
