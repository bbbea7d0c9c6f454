"""``invoke schema``: the JSON Schema of caproni.yaml, for editors and CI."""

from __future__ import annotations

from invoke.context import Context
from invoke.tasks import task

from caproni_tasks.atomicfile import write_atomic
from caproni_tasks.tasks._common import fail, output_path


@task(
    auto_shortflags=False,
    help={
        "output": "Write the schema to this file instead of printing it "
        "(point yaml-language-server at it with a '# yaml-language-server: $schema=…' line)."
    },
)
def schema(c: Context, output: str = "") -> None:
    """Print the JSON Schema (draft 2020-12) of caproni.yaml."""
    import sys

    from caproni_tasks.config.jsonschema import json_schema_text

    text = json_schema_text()
    if not output:
        sys.stdout.write(text)
        return
    target = output_path(output, "--output")
    try:
        write_atomic(target, text)
    except OSError as exc:
        fail(f"cannot write {target}: {exc.strerror or exc}")
    print(f"wrote {target}")
