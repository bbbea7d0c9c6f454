"""Opening variables by URL through a registry of openers keyed by scheme.

``file://<path>?decoder=<name>&wait=<duration>`` is built in; other schemes plug in
with `register_opener`. Schemes match case-insensitively and may carry the prefix
``runtimevar+`` (``runtimevar+file://…``), as Go Cloud's URL mux allows. Every bad URL
is a `VariableError` (INVALID_ARGUMENT) whose message starts ``open variable <url>:``.
"""

from __future__ import annotations

import os
import re
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from caproni_tasks.runtimevar.errors import ErrorCode, VariableError
from caproni_tasks.runtimevar.variable import Variable

if TYPE_CHECKING:
    from caproni_tasks.runtimevar.decoders import Decoder

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*$")
_PREFIX = "runtimevar+"


@dataclass(frozen=True)
class VariableURL:
    """A parsed variable URL as an opener receives it."""

    raw: str
    scheme: str  # lower case, without the ``runtimevar+`` prefix
    host: str  # as written (case kept)
    path: str  # percent-decoded
    query: Mapping[str, list[str]]
    base_dir: Path  # what relative paths resolve against

    def error(self, message: str) -> VariableError:
        return url_error(self.raw, message)


Opener = Callable[[VariableURL], Variable[Any]]
#: Checks a URL's options without opening anything (for validation); raises VariableError.
Checker = Callable[[VariableURL], object]

_OPENERS: dict[str, Opener] = {}
_CHECKERS: dict[str, Checker] = {}
_LOCK = threading.Lock()


def url_error(url: str, message: str) -> VariableError:
    # A URL with control characters (a pasted newline) is shown quoted: one line, visible.
    shown = repr(url) if any(not c.isprintable() for c in url) else url
    return VariableError(ErrorCode.INVALID_ARGUMENT, f"open variable {shown}: {message}")


def register_opener(
    scheme: str, opener: Opener, *, replace: bool = False, check: Checker | None = None
) -> None:
    """Serve URLs of *scheme* (case-insensitive) with *opener*; a taken scheme is an error
    unless *replace*. *check*, if given, validates a URL's options without opening it,
    so `check_variable_url` (config validation) can report them early."""
    if not _SCHEME.match(scheme):
        raise ValueError(f"invalid URL scheme {scheme!r}")
    key = scheme.lower()
    with _LOCK:
        if key in _OPENERS and not replace:
            raise ValueError(f"an opener for scheme {key!r} is already registered")
        _OPENERS[key] = opener
        if check is None:
            _CHECKERS.pop(key, None)
        else:
            _CHECKERS[key] = check


def schemes() -> list[str]:
    """The registered schemes, sorted."""
    with _LOCK:
        return sorted(_OPENERS)


def parse_variable_url(url: str, *, base_dir: str | os.PathLike[str] | None = None) -> VariableURL:
    """Split *url* for an opener; a missing scheme or an unparsable URL is an error."""
    if not isinstance(url, str) or not url.strip():
        raise url_error(repr(url), "empty URL")
    try:
        parts = urllib.parse.urlsplit(url)
        _ = parts.port  # raises on a malformed port
    except ValueError as exc:
        raise url_error(url, f"invalid URL: {exc}") from None
    scheme = parts.scheme.lower()
    if not scheme:
        raise url_error(url, "missing scheme (expected e.g. file:///path/to/value.json)")
    written = url.lstrip()[: len(parts.scheme)]
    if not url.lstrip()[len(written) :].startswith("://"):
        raise url_error(
            url, f'expected "{written}://" (e.g. file:///abs/path or file://./rel/path)'
        )
    if scheme.startswith(_PREFIX):
        scheme = scheme[len(_PREFIX) :]
    query: dict[str, list[str]] = {}
    try:
        path = urllib.parse.unquote(parts.path, errors="strict")
        pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError:
        raise url_error(url, "percent-encoded bytes that are not UTF-8 text") from None
    for key, value in pairs:
        query.setdefault(key, []).append(value)
    return VariableURL(
        raw=url,
        scheme=scheme,
        host=parts.netloc,
        path=path,
        query=query,
        base_dir=Path(base_dir) if base_dir is not None else Path.cwd(),
    )


def _opener_for(parsed: VariableURL) -> tuple[Opener, Checker | None]:
    with _LOCK:
        opener = _OPENERS.get(parsed.scheme)
        checker = _CHECKERS.get(parsed.scheme)
        known = sorted(_OPENERS)
    if opener is None:
        raise parsed.error(f'no opener for scheme "{parsed.scheme}" (known: {", ".join(known)})')
    return opener, checker


def open_variable(url: str, *, base_dir: str | os.PathLike[str] | None = None) -> Variable[Any]:
    """Open the variable named by *url*; relative paths resolve against *base_dir*
    (default: the current directory)."""
    parsed = parse_variable_url(url, base_dir=base_dir)
    opener, _ = _opener_for(parsed)
    return opener(parsed)


def check_variable_url(url: str, *, base_dir: str | os.PathLike[str] | None = None) -> None:
    """Raise the error `open_variable` would raise for a malformed *url*, opening nothing.

    Covers the URL's shape and scheme, and the options of schemes registered with a
    ``check`` (``file``: decoder, wait, unknown parameters, host and path).
    """
    parsed = parse_variable_url(url, base_dir=base_dir)
    _, checker = _opener_for(parsed)
    if checker is not None:
        checker(parsed)


def _single(url: VariableURL, key: str) -> str:
    values = url.query.get(key, [])
    if len(values) > 1:
        raise url.error(f'query parameter "{key}" given {len(values)} times')
    return values[0] if values else ""


@dataclass(frozen=True)
class FileURLOptions:
    """What a ``file`` URL asks for, checked."""

    path: Path
    decoder: Decoder[Any]
    wait: float


def parse_file_url(url: VariableURL) -> FileURLOptions:
    """The ``file`` scheme: ``file:///abs/path`` or ``file://./relative/path``."""
    from caproni_tasks.runtimevar.decoders import BYTES, decoder_by_name
    from caproni_tasks.runtimevar.durations import format_duration, parse_duration
    from caproni_tasks.runtimevar.filevar import DEFAULT_WAIT, MAX_WAIT, MIN_WAIT

    for key in url.query:
        if key not in ("decoder", "wait"):
            raise url.error(f'invalid query parameter "{key}"')
    decoder_name = _single(url, "decoder")
    try:
        decoder = decoder_by_name(decoder_name) if decoder_name else BYTES
    except VariableError as exc:
        raise url.error(exc.message) from None
    wait_text = _single(url, "wait")
    wait = DEFAULT_WAIT
    if wait_text:
        try:
            wait = parse_duration(wait_text)
        except ValueError as exc:
            raise url.error(f'invalid wait "{wait_text}": {exc}') from None
        if wait <= 0:
            wait = DEFAULT_WAIT  # as Go Cloud: zero or negative means the default
        elif not MIN_WAIT <= wait <= MAX_WAIT:
            raise url.error(
                f'invalid wait "{wait_text}": must be between {format_duration(MIN_WAIT)} '
                f"and {format_duration(MAX_WAIT)} (or 0 for the default "
                f"{format_duration(DEFAULT_WAIT)})"
            )
    if url.host.lower() not in ("", ".", "localhost"):
        raise url.error(
            f'file URL host must be empty or "." (got "{url.host}"): '
            "use file:///absolute/path or file://./relative/path"
        )
    if not url.path or url.path == "/":
        raise url.error("missing file path")
    if "\x00" in url.path:
        raise url.error("the file path contains a NUL character (%00): no file has that name")
    path = url.base_dir / url.path.lstrip("/") if url.host == "." else Path(url.path)
    return FileURLOptions(path, decoder, wait)


def open_file_url(url: VariableURL) -> Variable[Any]:
    from caproni_tasks.runtimevar.filevar import open_file_variable

    options = parse_file_url(url)
    return open_file_variable(options.path, options.decoder, wait=options.wait)


register_opener("file", open_file_url, check=parse_file_url)
