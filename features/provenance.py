"""Which code made a result: every run record keeps `code_version()`, so a figure is never shown or reused as
the work of other code. The package's version alone cannot say it (a checkout is edited between releases):
the hash of its source can; the git commit, when the source is exactly a commit's, names it for people."""
import functools
import hashlib
import os
import subprocess
from pathlib import Path

from cnncodes import __version__

ROOT = Path(__file__).resolve().parents[1]  # the repository root is the package (setup.cfg: cnncodes = .)
# with the root's own modules (cli.py, options.py, ...): what installs
PACKAGES = ("features", "pipeline", "classifiers", "commands")
GIT = "git"
GIT_SECONDS = 5  # a hung git (a network file system, a lock) never holds a run up for longer


def package_files(root: Path) -> list[Path]:
    """Every .py file of the package under `root`, sorted by path: tests/ and bench/ are not part of it."""
    files = [*root.glob("*.py"), *(f for package in PACKAGES for f in (root / package).rglob("*.py"))]
    return sorted(files, key=lambda f: f.relative_to(root).as_posix())


def source_sha256(root: Path) -> str:
    """sha256 over each package file's path and bytes, in path order: any edit, added or removed file changes it."""
    digest = hashlib.sha256()
    for file in package_files(root):
        data = file.read_bytes()
        digest.update(f"{file.relative_to(root).as_posix()}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def git_commit(root: Path) -> str | None:
    """The checkout's HEAD commit when the package's files under `root` are exactly that commit's (none
    changed, added, deleted, untracked or ignored), else None; so is every failure to ask (no git, not a
    repository, a timeout): reading git never fails a run."""
    files = [":(glob)*.py", *(f":(glob){package}/**/*.py" for package in PACKAGES)]
    try:
        head = _git(root, "rev-parse", "--verify", "HEAD")
        changed = _git(root, "status", "--porcelain", "--ignored", "--untracked-files=all", "--", *files)
    except (OSError, subprocess.SubprocessError):
        return None
    if head.returncode or changed.returncode or changed.stdout.strip():
        return None
    return head.stdout.strip() or None


def _git(root: Path, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}  # status never takes the index lock from a git command at work
    return subprocess.run([GIT, "-C", str(root), *args], capture_output=True, text=True, env=env,
                          stdin=subprocess.DEVNULL, timeout=GIT_SECONDS)


@functools.cache
def code_version(root: Path = ROOT) -> dict:
    """{"version": the package's version, "source_sha256": source_sha256(root), "commit": git_commit(root)};
    computed once per process."""
    return {"version": __version__, "source_sha256": source_sha256(root), "commit": git_commit(root)}


def made_by_this_code(record) -> bool:
    """Whether a run record (or a k-fold fold's result) holds this process's source hash; records from a
    cnncodes that kept none were made by other code, as far as anyone can tell."""
    code = record.get("code") if isinstance(record, dict) else None
    return isinstance(code, dict) and code.get("source_sha256") == code_version()["source_sha256"]
