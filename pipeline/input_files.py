"""Which files a run reads, and how they are named: `--input` arguments (files, folders, globs) matched into
`InputFile`s, each with its format and a readable name, and the parts (`ByteRange`) a file is read in.

A folder means every supported file below it; a glob or a file is taken as given. Symbolic links below an
input folder or a glob's folder follow one policy (`walk_local_folder`): inside the input folder they are
followed, once per real file or folder; outside they are never read, and are rejected by name. Local entries
Beam's listing would skip silently (dangling links, FIFOs...) are listed, so that reading them rejects them.
Paths that are not valid UTF-8 travel through Beam as their bytes (`to_wire` / `from_wire`).
"""
from __future__ import annotations

import os
import posixpath
import re
from typing import Iterable, NamedTuple, Optional

from apache_beam.io.filesystem import FileMetadata
from apache_beam.io.filesystems import FileSystems

from wirewash.transforms.types import FORMAT_HTML, FORMAT_TEXT

__all__ = ["InputFile", "ByteRange", "InputError", "match_inputs", "format_of", "readable_name", "glob_root",
           "walk_local_folder", "to_wire", "from_wire", "FORMAT_JSONL",
           "not_read_by_type", "describe_not_read"]


FORMAT_JSONL = "jsonl"
SUFFIX_FORMATS = ((".jsonl.gz", FORMAT_JSONL), (".jsonl", FORMAT_JSONL), (".txt", FORMAT_TEXT),
                  (".html", FORMAT_HTML), (".htm", FORMAT_HTML))
REASON_UNREADABLE = "unreadable_file"
REASON_SYMLINK_OUTSIDE = "symlink_outside_input"
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class InputError(ValueError):
    """An input argument that matches nothing or cannot be read; the message names it."""


class InputFile(NamedTuple):
    """A matched input file: its full path, the path shown to users and hashed into ids (always valid UTF-8,
    `readable_name`), its format, and, for an entry refused when listed, (reason, message) for its rejection."""

    path: str
    rel_path: str
    format: Optional[str]
    problem: tuple = ()


class ByteRange(NamedTuple):
    """A line-aligned part of an input file: bytes [start, end) whose first line is line number `first_line`.
    `end` None means the whole file (compressed, UTF-16, text and HTML files, small or unreadable files)."""

    file: tuple
    start: int = 0
    end: Optional[int] = None
    first_line: int = 1


def format_of(path: str) -> Optional[str]:
    """The input format a file name implies (`jsonl`, `text`, `html`), or None when unsupported."""
    name = path.lower()
    for suffix, fmt in SUFFIX_FORMATS:
        if name.endswith(suffix):
            return fmt
    return None


def readable_name(path: str) -> str:
    """A file name as valid UTF-8 text: itself, or, when the file system's bytes are not UTF-8 (Python holds
    them as lone surrogates), with each such byte escaped (`caf\\xe9.jsonl`)."""
    try:
        path.encode("utf-8")
        return path
    except UnicodeEncodeError:
        return path.encode("utf-8", "surrogateescape" if _fs_escaped(path) else "backslashreplace").decode(
            "utf-8", "backslashreplace")


def _fs_escaped(path: str) -> bool:
    return all("\udc80" <= ch <= "\udcff" for ch in _LONE_SURROGATE.findall(path))


def to_wire(input_file) -> tuple:
    """An InputFile as a tuple Beam can encode: a path that is not valid UTF-8 travels as its bytes."""
    path = input_file[0]
    if isinstance(path, str) and readable_name(path) != path:
        path = os.fsencode(path) if _fs_escaped(path) else path.encode("utf-8", "surrogatepass")
    return (path,) + tuple(input_file[1:])


def from_wire(wired) -> InputFile:
    """The InputFile that `to_wire` made `wired` from."""
    path = wired[0]
    return InputFile(os.fsdecode(path) if isinstance(path, bytes) else path, *wired[1:])


def glob_root(pattern: str) -> str:
    """The folder part of a pattern before its first wildcard: the root that relative paths start from."""
    head = re.split(r"[*?\[]", pattern, maxsplit=1)[0]
    return head if head.endswith("/") else _folder_of(head)


def _folder_of(path: str) -> str:
    """The folder part of a path, with its `/`; "" (the working folder) for a bare relative name, never `/`:
    the root a named file's symbolic-link check resolves against."""
    folder = posixpath.dirname(path)
    return folder.rstrip("/") + "/" if folder else ""


def match_inputs(patterns: Iterable[str], not_read: Optional[list] = None) -> list[InputFile]:
    """Expands input arguments (files, folders, globs) into sorted `InputFile`s.

    A folder means every supported file below it (other files, like a README, are not input; their paths
    are appended to `not_read` when given, so the run can say so). A glob or file is taken as given: a
    matched file of an unsupported type is rejected later, not skipped.
    Raises InputError naming the argument that matches nothing.
    """
    found: dict[str, InputFile] = {}
    for given in patterns:
        pattern = _local_glob_from_cwd(given)
        literal = _literal_path(pattern)
        is_dir = (literal or not any(ch in pattern for ch in "*?[")) and _is_directory(pattern)
        if is_dir:
            base = pattern.rstrip("/") + "/"
            globs = [base + "**"] if "://" in pattern else []
        else:
            base = _folder_of(pattern) if literal else glob_root(pattern)
            globs = [] if literal else [pattern]
        try:
            results = FileSystems.match(globs) if globs else []
        except Exception as err:  # Beam raises BeamIOError with per-pattern causes
            raise InputError(f"cannot list input {given!r}: {err}") from err
        local = "://" not in pattern
        if local and is_dir:  # symlinks and non-UTF-8 names handled here (Beam's listing skips linked folders)
            matched = walk_local_folder(base)
        elif literal:
            matched = [(pattern, _outside(pattern, base))]
        else:
            matched = [(m.path, ()) for r in results for m in r.metadata_list]
            if local:
                matched += [(path, ()) for path in _unlisted_local(base, globs[0], is_dir)]
                matched = [(path, problem or _outside(path, base)) for path, problem in matched]
        files = []
        for path, problem in matched:
            fmt = format_of(path)
            if is_dir and fmt is None and not (problem and os.path.isdir(path)):
                if not_read is not None:
                    not_read.append(path)
                continue
            rel = path[len(base):] if path.startswith(base) else posixpath.basename(path)
            files.append(InputFile(path, readable_name(rel or posixpath.basename(path)), fmt, problem))
        if not files:
            what = "no .jsonl, .jsonl.gz, .txt, .html or .htm files in folder" if is_dir else "nothing matches"
            raise InputError(f"{what} {given!r}")
        for f in files:
            found.setdefault(f.path, f)
    return sorted(found.values())


def _literal_path(pattern: str) -> bool:
    """Whether a local argument holding *, ?, [ or ] names an existing file or folder that, read as a
    pattern, matches nothing (`in[1]/`, `notes[draft].jsonl`): it is then taken as the path it names, as a
    shell does, instead of "nothing matches"."""
    if "://" in pattern or not any(ch in pattern for ch in "*?[") or not os.path.lexists(pattern):
        return False
    try:
        return not any(r.metadata_list for r in FileSystems.match([pattern]))
    except Exception:  # noqa: BLE001 - not a pattern Beam can list: the path itself
        return True


def _local_glob_from_cwd(pattern: str) -> str:
    """A relative local glob (`*.jsonl`, `in/*.txt`) made absolute from the working folder: Beam's local listing
    matches nothing for a relative glob. Files, folders, absolute and remote patterns are returned as given."""
    if "://" in pattern or os.path.isabs(pattern) or not any(ch in pattern for ch in "*?["):
        return pattern
    return os.path.join(os.getcwd(), pattern)


def _inside(real: str, real_root: str) -> bool:
    return real == real_root or real.startswith(real_root.rstrip(os.sep) + os.sep)


def _outside(path: str, base: str) -> tuple:
    """(symlink_outside_input, message) when the local `path` resolves outside the folder `base`, else ()."""
    real, root = os.path.realpath(path), os.path.realpath(base or ".")
    if _inside(real, root) or not os.path.lexists(path) or not os.path.exists(path):
        return ()
    return (REASON_SYMLINK_OUTSIDE, f"{readable_name(path)} is a symbolic link to {readable_name(real)}, outside "
                                    f"the input folder {readable_name(root)}")


def walk_local_folder(root: str) -> list[tuple[str, tuple]]:
    """(path, problem) for every entry below the local folder `root`, sorted: files, FIFOs and dangling
    links as they are (the reader says what is wrong with them), and symbolic links by this policy:
    a link that resolves inside `root` is followed (a linked folder is read, a linked file is read), once
    per real file or folder (a link to what was already read, or a loop, adds nothing: the real entry is
    read under its own name); a link that resolves outside `root` is not followed, and comes back with the
    problem (symlink_outside_input, message) so that it is rejected by name. A folder that cannot be listed
    comes back with (unreadable_file, message). Nothing below `root` is skipped without a word."""
    real_root = os.path.realpath(root)
    seen_dirs, seen_files, found, links = set(), set(), [], []

    def walk(folder: str) -> None:
        real = os.path.realpath(folder)
        if real in seen_dirs:
            return
        seen_dirs.add(real)
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as err:
            found.append((folder, (REASON_UNREADABLE, f"cannot list the folder {readable_name(folder)}: {err}")))
            return
        for entry in entries:
            if entry.is_symlink():
                links.append(entry.path)
            elif entry.is_dir(follow_symlinks=False):
                walk(entry.path)
            else:
                seen_files.add(os.path.realpath(entry.path))
                found.append((entry.path, ()))

    walk(root)
    while links:  # links after the real entries, so that those keep their own names
        pending, links = sorted(links), []
        for link in pending:
            target = os.path.realpath(link)
            if not os.path.exists(link):  # dangling, or a loop of links: the reader rejects it by name
                found.append((link, ()))
            elif not _inside(target, real_root):
                found.append((link, _outside(link, root)))
            elif os.path.isdir(link):
                walk(link)
            elif target not in seen_files:
                seen_files.add(target)
                found.append((link, ()))
    return sorted(found)


def _unlisted_local(base: str, pattern: str, is_dir: bool) -> list[str]:
    """Local entries that `pattern` matches but Beam's listing silently skips: dangling or looping symlinks,
    and (for a glob, not a folder) directories. They are returned so that each becomes an `unreadable_file`
    rejection naming it, instead of an input that vanishes without a trace."""
    root = base if os.path.isdir(base) else os.path.dirname(base.rstrip("/"))
    if not root or not os.path.isdir(root) or (root == "/" and not os.path.isabs(pattern)):
        return []  # a bare relative name (`in.jsonl`) has the root /, whose walk took seconds and found nothing
    entries = []
    if not is_dir and not any(ch in pattern for ch in "*?["):
        # a file named as it is: the one entry it can match is itself (not every file in its folder's tree,
        # which may hold whole lakes and virtualenvs: the walk took seconds of every run's start)
        if os.path.lexists(pattern) and not os.path.exists(pattern):
            entries.append(pattern)
    else:
        entries = _walk_unlisted(root, is_dir)
    filesystem = FileSystems.get_filesystem(pattern)
    return [m.path for m in filesystem.match_files([FileMetadata(e, 0) for e in entries], pattern)]


def _walk_unlisted(root: str, is_dir: bool) -> list[str]:
    """Every dangling entry below `root`, and (unless `is_dir`) every folder."""
    entries = []
    for dirpath, dirnames, filenames in os.walk(root):
        entries += [os.path.join(dirpath, n) for n in filenames if not os.path.exists(os.path.join(dirpath, n))]
        if not is_dir:
            entries += [os.path.join(dirpath, d) for d in dirnames]
    return entries


def _is_directory(path: str) -> bool:
    if "://" not in path:
        return os.path.isdir(path)
    try:
        return not FileSystems.match([path])[0].metadata_list and bool(
            FileSystems.match([path.rstrip("/") + "/*"])[0].metadata_list)
    except Exception:
        return False


COMPRESSED_SUFFIXES = (".gz", ".zst", ".bz2", ".xz", ".zip", ".lz4")


def not_read_by_type(paths: Iterable[str]) -> dict:
    """File type (the name's extension, with the one before it for a compressed file: `.md`, `.jsonl.zst`;
    `(none)`) -> how many of `paths`, most first."""
    counts: dict = {}
    for path in paths:
        stem, ext = posixpath.splitext(posixpath.basename(path.rstrip("/")).lower())
        if ext in COMPRESSED_SUFFIXES:
            ext = posixpath.splitext(stem)[1] + ext
        kind = ext[:16] or "(none)"
        counts[kind] = counts.get(kind, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))


def describe_not_read(paths: list) -> str:
    """One line for the files a folder input held but wirewash does not read, by type."""
    kinds = not_read_by_type(paths)
    shown = ", ".join(f"{kind} {n}" for kind, n in list(kinds.items())[:5])
    more = f", +{len(kinds) - 5} more types" if len(kinds) > 5 else ""
    files = "file" if len(paths) == 1 else "files"
    return f"not read: {len(paths)} {files} of other types in the input folders ({shown}{more})"
