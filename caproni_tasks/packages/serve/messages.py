"""Request fields in, response messages out, as protojson does it.

In: a JSON object; each field by its camelCase or snake_case name; unknown fields
ignored; ``null`` means the default; int64/int32 as a number or a decimal string;
enums by name or number. A field of the wrong type is INVALID_ARGUMENT naming it.
Out: camelCase, enums as names, int64 as strings, default values left out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from caproni_tasks.ensure import (
    ValidationError,
    validate_package_name,
    validate_ref,
    validate_tag,
)
from caproni_tasks.packages.cipd_protocol import (
    GrpcCode,
    PrpcError,
    field,
    instance_id_of_ref,
    object_ref,
)

__all__ = [
    "Message",
    "instance_message",
    "invalid",
    "ref_message",
    "tag_message",
]

_HASH_ALGO_NAMES = {1: "SHA1", 2: "SHA256"}


def invalid(message: str) -> PrpcError:
    return PrpcError(GrpcCode.INVALID_ARGUMENT, message)


class Message:
    """One decoded request message (or a nested one) with typed, checked getters."""

    def __init__(self, data: Mapping[str, Any], where: str = "") -> None:
        self._data = data
        self._where = where

    def _name(self, camel: str) -> str:
        return f"{self._where}{camel}"

    def _raw(self, camel: str) -> Any:
        return field(self._data, camel)

    def string(self, camel: str) -> str:
        value = self._raw(camel)
        if value is None:
            return ""
        if not isinstance(value, str):
            raise invalid(f"{self._name(camel)}: expected a string, got {_kind(value)}")
        return value

    def boolean(self, camel: str) -> bool:
        value = self._raw(camel)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise invalid(f"{self._name(camel)}: expected true or false, got {_kind(value)}")
        return value

    def integer(self, camel: str) -> int:
        value = self._raw(camel)
        if value is None:
            return 0
        if isinstance(value, bool) or not isinstance(value, int | str | float):
            raise invalid(f"{self._name(camel)}: expected an integer, got {_kind(value)}")
        if isinstance(value, float):
            if not value.is_integer():
                raise invalid(f"{self._name(camel)}: expected an integer, got {value}")
            return int(value)
        try:
            return int(value)
        except ValueError:
            raise invalid(f"{self._name(camel)}: expected an integer, got {value!r}") from None

    def message(self, camel: str) -> Message | None:
        value = self._raw(camel)
        if value is None:
            return None
        if not isinstance(value, dict):
            raise invalid(f"{self._name(camel)}: expected an object, got {_kind(value)}")
        return Message(value, f"{self._name(camel)}.")

    def messages(self, camel: str) -> list[Message]:
        value = self._raw(camel)
        if value is None:
            return []
        if not isinstance(value, list):
            raise invalid(f"{self._name(camel)}: expected a list, got {_kind(value)}")
        found = []
        for number, item in enumerate(value):
            if not isinstance(item, dict):
                raise invalid(
                    f"{self._name(camel)}[{number}]: expected an object, got {_kind(item)}"
                )
            found.append(Message(item, f"{self._name(camel)}[{number}]."))
        return found

    # --- CIPD values ---------------------------------------------------------------

    def package(self, camel: str = "package") -> str:
        name = self.string(camel)
        if not name:
            raise invalid(f"{self._name(camel)}: a package name is required")
        try:
            validate_package_name(name)
        except ValidationError as error:
            raise invalid(f"bad package name: {error}") from None
        return name

    def prefix(self, camel: str = "prefix") -> str:
        """A package prefix: "" (the root) or a package name, a trailing "/" allowed."""
        prefix = self.string(camel).strip("/")
        if prefix:
            try:
                validate_package_name(prefix)
            except ValidationError as error:
                raise invalid(f"bad prefix: {error}") from None
        return prefix

    def instance_id(self, camel: str = "instance") -> str:
        """The instance ID of an ObjectRef field (required)."""
        ref = self.message(camel)
        if ref is None:
            raise invalid(f"{self._name(camel)}: an object ref is required")
        data = dict(ref._data)
        algo = field(data, "hashAlgo")
        if isinstance(algo, int) and not isinstance(algo, bool):
            data = {"hashAlgo": _HASH_ALGO_NAMES.get(algo), "hexDigest": field(data, "hexDigest")}
        try:
            return instance_id_of_ref(data)
        except ValueError:
            raise invalid(
                f"{self._name(camel)}: not a valid object ref (hashAlgo SHA1 or SHA256, "
                "hexDigest of lowercase hex of the right length)"
            ) from None

    def ref_name(self, camel: str = "name") -> str:
        name = self.string(camel)
        try:
            validate_ref(name)
        except ValidationError as error:
            raise invalid(str(error)) from None
        return name

    def tags(self, camel: str = "tags") -> list[str]:
        """``[{key, value}]`` as ``key:value`` strings, each validated."""
        found = []
        for item in self.messages(camel):
            tag = f"{item.string('key')}:{item.string('value')}"
            try:
                validate_tag(tag)
            except ValidationError as error:
                raise invalid(str(error)) from None
            found.append(tag)
        return found


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string"}.get(
        type(value), "an object" if isinstance(value, dict) else "a list"
    )


# --- out -----------------------------------------------------------------------------


def instance_message(package: str, instance_id: str, registered_at: str = "") -> dict[str, Any]:
    message: dict[str, Any] = {"package": package, "instance": object_ref(instance_id)}
    if registered_at:
        message["registeredTs"] = registered_at
    return message


def ref_message(package: str, name: str, instance_id: str) -> dict[str, Any]:
    return {"name": name, "package": package, "instance": object_ref(instance_id)}


def tag_message(tag: str) -> dict[str, Any]:
    key, _, value = tag.partition(":")
    return {"key": key, "value": value}
