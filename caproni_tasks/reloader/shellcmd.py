"""How a ``command:`` string is started, so that the supervised pid is the real program.

A command without shell syntax (``python app.py --port 8080``, quotes allowed) is split
like a shell would (`shlex.split`) and executed directly: no ``/bin/sh`` in between, so
``status`` shows the program's pid and signals reach it at once. A command that needs a
shell (pipes, ``;``, ``&&``, ``$VAR``, globs, builtins…) runs with ``<shell> -c``; when it
is one simple command, ``exec`` is put in front, so the shell replaces itself with the
program instead of waiting for it.
"""

from __future__ import annotations

import re
import shlex

__all__ = ["command_argv", "needs_shell", "single_simple_command"]

#: Characters that make the shell do something a plain split would not (expansions,
#: globs, redirections, control operators, escapes, comments, subshells).
_SHELL_CHARS = frozenset("$`\\|&;<>()*?[]{}~#!\n\r")
#: First words the shell interprets itself (reserved words and builtins that matter).
_SHELL_FIRST_WORDS = frozenset(
    (
        *(".", ":", "[", "[[", "{", "(", "!", "alias", "bg", "break", "builtin", "cd"),
        *("command", "continue", "eval", "exec", "exit", "export", "fg", "for", "function"),
        *("getopts", "hash", "if", "jobs", "kill", "let", "local", "read", "readonly"),
        *("return", "set", "shift", "source", "test", "time", "times", "trap", "type"),
        *("ulimit", "umask", "unalias", "unset", "until", "wait", "while", "case"),
        *("select", "then", "do", "done", "fi", "esac", "elif", "else"),
    )
)
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
#: Operators that end a simple command (outside quotes): after one of them the shell
#: has more to do than run one program, so it must not be replaced by ``exec``.
_CONTROL = ("&&", "||", ";;", "|", "&", ";", "\n", "(", ")", "{", "}")


def needs_shell(command: str) -> bool:
    """Whether ``command`` uses anything a plain word split would not reproduce."""
    quote = ""
    for ch in command:
        if quote:
            if ch == quote:
                quote = ""
            elif quote == '"' and ch in "$`\\":
                return True  # expansions and escapes inside double quotes
        elif ch in "'\"":
            quote = ch
        elif ch in _SHELL_CHARS:
            return True
    try:
        words = shlex.split(command)
    except ValueError:
        return True  # an unclosed quote: let the shell say what is wrong
    if not words:
        return True
    first = words[0]
    return first in _SHELL_FIRST_WORDS or bool(_ASSIGNMENT.match(first))


def single_simple_command(command: str) -> bool:
    """Whether ``command`` is one simple command the shell can ``exec``: no control
    operator or grouping outside quotes, and it starts with a program's name (not an
    assignment, a builtin or a reserved word)."""
    quote = ""
    escaped = False
    for index, ch in enumerate(command):
        if escaped:
            escaped = False
            continue
        if ch == "\\" and quote != "'":
            escaped = True
            continue
        if quote:
            if ch == quote:
                quote = ""
            continue
        if ch in "'\"":
            quote = ch
            continue
        if ch == "`" or command.startswith("$(", index):
            return False  # command substitution: keep it simple and safe
        if ch == "#" and (index == 0 or command[index - 1].isspace()):
            return False  # a comment could hide anything after it
        if any(command.startswith(op, index) for op in _CONTROL):
            return False
    if quote or escaped:
        return False
    try:
        words = shlex.split(command)
    except ValueError:
        return False
    if not words:
        return False
    first = words[0]
    return first not in _SHELL_FIRST_WORDS and not _ASSIGNMENT.match(first)


def command_argv(command: str, shell: str = "/bin/sh") -> list[str]:
    """The argv that starts ``command``: the program itself when no shell is needed;
    else ``shell -c`` with ``exec`` in front when the shell allows it."""
    if not needs_shell(command):
        return shlex.split(command)
    if single_simple_command(command):
        return [shell, "-c", f"exec {command.lstrip()}"]
    return [shell, "-c", command]
