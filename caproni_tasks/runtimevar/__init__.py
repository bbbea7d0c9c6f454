"""Runtime variables: values that live in files, decoded, watched and observable.

Go Cloud's ``runtimevar`` semantics with a file driver on watchfiles that sees
creation, deletion, rename-saves and symlink swaps within milliseconds::

    from caproni_tasks.runtimevar import open_variable

    with open_variable("file://./conf/flags.json?decoder=jsonmap") as var:
        print(var.latest(timeout=5).value)       # last good value
        for snap in var.changes():               # each change, newest first-come
            ...

Async code uses ``await var.latest_async()`` and ``async for s in var.changes_async()``.
"""

from __future__ import annotations

from caproni_tasks.runtimevar.decoders import (
    BYTES,
    JSONMAP,
    STRING,
    Decoder,
    decoder_by_name,
    decoder_names,
    json_decoder,
    register_decoder,
)
from caproni_tasks.runtimevar.durations import parse_duration
from caproni_tasks.runtimevar.errors import ERR_CLOSED, ErrorCode, VariableError, error_code
from caproni_tasks.runtimevar.filevar import DEFAULT_WAIT, open_file_variable
from caproni_tasks.runtimevar.urls import (
    Checker,
    Opener,
    VariableURL,
    check_variable_url,
    open_variable,
    parse_variable_url,
    register_opener,
    schemes,
)
from caproni_tasks.runtimevar.variable import (
    AsyncChanges,
    Changes,
    Driver,
    Publish,
    Snapshot,
    Variable,
)

__all__ = [
    "BYTES",
    "DEFAULT_WAIT",
    "ERR_CLOSED",
    "JSONMAP",
    "STRING",
    "AsyncChanges",
    "Changes",
    "Checker",
    "Decoder",
    "Driver",
    "ErrorCode",
    "Opener",
    "Publish",
    "Snapshot",
    "Variable",
    "VariableError",
    "VariableURL",
    "check_variable_url",
    "decoder_by_name",
    "decoder_names",
    "error_code",
    "json_decoder",
    "open_file_variable",
    "open_variable",
    "parse_duration",
    "parse_variable_url",
    "register_decoder",
    "register_opener",
    "schemes",
]
