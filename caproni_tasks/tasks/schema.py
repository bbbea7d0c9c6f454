"""``invoke schema``: the JSON Schema of caproni.yaml, for editors and CI."""

from __future__ import annotations

from pathlib import Path

from invoke.context import Context
from invoke.tasks import task

from caproni_tasks.tasks._common import fail


@task(
    help={
        "output": "Write the schema to this file instead of printing it "
        "(point yaml-language-server at it with a '# yaml-language-server: $schema=…' line)."
    }
)
def schema(c: Context, output: str = "") -> None:
    """Print the JSON Schema (draft 2020-12) of caproni.yaml."""
    import sys

    from caproni_tasks.config.jsonschema import json_schema_text

    text = json_schema_text()
    if not output:
        sys.stdout.write(text)
        return
    target = Path(output).expanduser()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.tmp")
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(target)
    except OSError as exc:
        fail(f"cannot write {target}: {exc.strerror or exc}")
    print(f"wrote {target}")
