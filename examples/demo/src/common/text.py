"""Shared by the demo's server: edit it and watch the server restart."""


def decorate(greeting: str) -> str:
    return f"*** {greeting.strip()} ***"
