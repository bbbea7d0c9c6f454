"""Reference §1-5: lines and tokens, order, settings, directives, package lines."""

from __future__ import annotations

import pytest

from caproni_tasks.ensure import EnsureFile, EnsureFileError, EnsureParseError, PackageDef, parse

LINUX = {"os": "linux", "arch": "amd64", "platform": "linux-amd64"}


def p(text: str) -> EnsureFile:
    return parse(text, host_args=LINUX)


def parse_error(text: str) -> EnsureParseError:
    with pytest.raises(EnsureParseError) as err:
        p(text)
    return err.value


def root(f: EnsureFile) -> list[tuple[str, str, int]]:
    return [(d.template, d.version, d.line) for d in f.packages_by_subdir.get("", [])]


# --- §1 lines and tokens ---------------------------------------------------------------


def test_lines_split_on_newline_and_crlf_drops_cr() -> None:
    f = p("a/b v1\r\nc/d v2\r\n")
    assert root(f) == [("a/b", "v1", 1), ("c/d", "v2", 2)]


def test_last_line_without_newline_counts() -> None:
    assert root(p("a x\nb y")) == [("a", "x", 1), ("b", "y", 2)]


def test_line_numbers_count_every_physical_line() -> None:
    f = p("\n# comment\n\n   \nx/y latest\n")
    assert root(f) == [("x/y", "latest", 5)]


@pytest.mark.parametrize(
    "space",
    [
        "\t",
        "\x0b",
        "\x0c",
        "\r",
        " ",
        "\x85",
        "\xa0",
        "\u1680",
        "\u2000",
        "\u2005",
        "\u200a",
        "\u2028",
        "\u2029",
        "\u202f",
        "\u205f",
        "\u3000",
    ],
)
def test_unicode_whitespace_trims_and_separates(space: str) -> None:
    f = p(f"{space}pkg/a{space}{space}ver{space}1{space}\n")
    assert root(f) == [("pkg/a", f"ver{space}1", 1)]


@pytest.mark.parametrize("char", ["\x1c", "\x1d", "\x1e", "\x1f", "\ufeff", "\u200b"])
def test_information_separators_bom_and_zero_width_space_are_not_whitespace(char: str) -> None:
    f = p(f"{char}pkg{char}x y\n")
    assert root(f) == [(f"{char}pkg{char}x", "y", 1)]


def test_bom_is_not_stripped() -> None:
    f = p("\ufeff$ServiceURL https://x\n")
    assert f.service_url == ""
    assert root(f) == [("\ufeff$ServiceURL", "https://x", 1)]


def test_blank_and_comment_lines_are_skipped() -> None:
    f = p("   \n\t# indented comment\n#\n")
    assert f == EnsureFile()
    assert f.packages_by_subdir == {}


def test_no_end_of_line_comments() -> None:
    assert root(p("pkg ver # c\n")) == [("pkg", "ver # c", 1)]


def test_rest_keeps_inner_whitespace_and_may_be_empty() -> None:
    assert root(p("a  b \t c  \nd\n")) == [("a", "b \t c", 1), ("d", "", 2)]


def test_hash_inside_head_is_part_of_the_template() -> None:
    assert root(p("a#b c\n")) == [("a#b", "c", 1)]


@pytest.mark.parametrize(
    "text", ["$ServiceURL https://x", "$serviceurl https://x", "$SERVICEURL https://x"]
)
def test_keywords_are_case_insensitive(text: str) -> None:
    assert p(text).service_url == "https://x"


def test_directive_keyword_is_case_insensitive() -> None:
    assert p("@SUBDIR a\np v\n@subdir b\nq v\n").packages_by_subdir.keys() == {"a", "b"}


def test_keyword_case_folding_is_gos_not_pythons() -> None:
    # Go lower-cases U+0130 to "i" but keeps U+017F (long s) and U+0131 (dotless i).
    assert p("$ServİceURL https://x").service_url == "https://x"
    for head in ("$ſerviceURL", "$ServıceURL"):
        assert parse_error(f"{head} https://x").message == f'unknown $setting: "{head}"'


# --- §2 order --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "pkg v\n$ServiceURL https://x\n",
        "@Subdir a\n$ParanoidMode CheckPresence\n",
        "pkg v\n\n# c\n$bogus\n",
        "pkg v\n$\n",
    ],
)
def test_setting_after_statement(text: str) -> None:
    err = parse_error(text)
    assert err.message == "$setting found after non-$setting statements"
    assert err.line == text.count("\n", 0, text.rindex("$")) + 1
    assert str(err) == (
        f"failed to parse desired state (line {err.line}): "
        "$setting found after non-$setting statements"
    )


def test_settings_after_blank_and_comment_lines_are_fine() -> None:
    f = p("# hi\n\n$ServiceURL https://x\n\n$ParanoidMode CheckPresence\npkg v\n")
    assert (f.service_url, f.paranoid_mode) == ("https://x", "CheckPresence")


def test_earlier_error_wins_over_order_error() -> None:
    err = parse_error("@Subdir ${nope}\n$ServiceURL https://x\n")
    assert err.line == 1


# --- §3 settings -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "https://chrome-infra-packages.appspot.com",
        "file:///srv/pkgs",
        "http://127.0.0.1:8080/x",
        # As Go's url.Parse: non-ASCII hosts, unchecked queries, opaque URLs, the
        # port after the last colon, IPv6 literals and "%25" in a host are fine.
        "https://例え.jp/x",
        "https://x/?q=%zz",
        "mailto:a%zz",
        "http://a:b:80/",
        "http://[::1]:80/",
        "http://%25/",
        "http://user:pw@x/",
    ],
)
def test_service_url(url: str) -> None:
    assert p(f"$ServiceURL {url}\n").service_url == url


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("", 'parse "": missing protocol scheme'),
        ("example.com", 'parse "example.com": missing protocol scheme'),
        (":foo", 'parse ":foo": missing protocol scheme'),
        ("http://x/%zz", 'parse "http://x/%zz": invalid URL escape "%zz"'),
        ("http://x:port/", 'parse "http://x:port/": invalid port ":port" after host'),
        ("http://a b/", 'parse "http://a b/": invalid character " " in host name'),
        ("http://[::1", """parse "http://[::1": missing ']' in host"""),
        ("http://[::1]x", 'parse "http://[::1]x": invalid port "x" after host'),
        ("http://%41/", 'parse "http://%41/": invalid URL escape "%41"'),
        ("http://u ser@x/", 'parse "http://u ser@x/": net/url: invalid userinfo'),
        ("http://u%zz@x/", 'parse "http://u%zz@x/": invalid URL escape "%zz"'),
        # The fragment is split off first: an error before it quotes the URL without it.
        ("http://x/%zz#f", 'parse "http://x/%zz": invalid URL escape "%zz"'),
        ("http://x/#%zz", 'parse "http://x/#%zz": invalid URL escape "%zz"'),
    ],
)
def test_service_url_must_parse_with_scheme(url: str, reason: str) -> None:
    err = parse_error(f"$ServiceURL {url}\n")
    assert err.message == f"expecting '$ServiceURL <url>' but url is invalid: {reason}"


def test_service_url_only_once() -> None:
    err = parse_error("$ServiceURL https://a\n$ServiceURL https://b\n")
    assert (err.line, err.message) == (2, "$ServiceURL may only be set once per file")


def test_verified_platforms_accumulate_in_order_with_duplicates() -> None:
    f = p("$VerifiedPlatform linux-amd64  mac-arm64\n$VerifiedPlatform linux-amd64 -\n")
    assert f.verified_platforms == [
        ("linux", "amd64"),
        ("mac", "arm64"),
        ("linux", "amd64"),
        ("", ""),
    ]


def test_verified_platform_os_and_arch_are_not_checked() -> None:
    assert p("$VerifiedPlatform plan9-z80 os-\n").verified_platforms == [
        ("plan9", "z80"),
        ("os", ""),
    ]


def test_verified_platform_without_value_adds_nothing() -> None:
    assert p("$VerifiedPlatform\n").verified_platforms == []


@pytest.mark.parametrize(
    ("value", "index", "field"),
    [("linux", 1, "linux"), ("linux-amd64 mac-arm-64", 2, "mac-arm-64"), ("a-b c-d e", 3, "e")],
)
def test_verified_platform_needs_exactly_one_dash(value: str, index: int, field: str) -> None:
    err = parse_error(f"$VerifiedPlatform {value}\n")
    assert err.message == (
        f'invalid platform entry #{index}: platform must be <os>-<arch>, got "{field}"'
    )
    assert err.column == len("$VerifiedPlatform ") + value.index(field) + 1


@pytest.mark.parametrize("mode", ["NotParanoid", "CheckPresence", "CheckIntegrity"])
def test_paranoid_modes(mode: str) -> None:
    assert p(f"$ParanoidMode {mode}\n").paranoid_mode == mode


def test_paranoid_mode_last_one_wins() -> None:
    f = p("$ParanoidMode CheckIntegrity\n$ParanoidMode CheckPresence\n")
    assert f.paranoid_mode == "CheckPresence"


@pytest.mark.parametrize("mode", ["checkpresence", "", "Check Presence"])
def test_paranoid_mode_is_case_sensitive(mode: str) -> None:
    err = parse_error(f"$ParanoidMode {mode}\n")
    assert err.message == f'bad $ParanoidMode: unrecognized paranoid mode "{mode}"'


def test_resolved_versions_any_string_last_one_wins() -> None:
    f = p("$ResolvedVersions a b.versions\n$ResolvedVersions ../x.versions\n")
    assert f.resolved_versions == "../x.versions"


def test_override_install_mode_copy() -> None:
    assert p("$OverrideInstallMode copy\n").override_install_mode == "copy"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("symlink", "only copy mode is allowed"),
        ("", "only copy mode is allowed"),
        ("Copy", 'invalid install mode "Copy"'),
        ("hardlink", 'invalid install mode "hardlink"'),
    ],
)
def test_override_install_mode_errors(value: str, message: str) -> None:
    assert parse_error(f"$OverrideInstallMode {value}\n").message == message


@pytest.mark.parametrize("head", ["$", "$Bogus", "$ServiceURLs", "$service_url"])
def test_unknown_setting_quotes_head_as_written(head: str) -> None:
    err = parse_error(f"{head} value\n")
    assert err.message == f'unknown $setting: "{head}"'


# --- §4 directives ---------------------------------------------------------------------


def test_subdir_is_sticky_and_repeats_append() -> None:
    f = p("a v\n@Subdir x\nb v\nc v\n@Subdir\nd v\n@Subdir x\ne v\n")
    assert {k: [d.template for d in v] for k, v in f.packages_by_subdir.items()} == {
        "": ["a", "d"],
        "x": ["b", "c", "e"],
    }


def test_subdir_key_is_raw_unexpanded_value() -> None:
    f = p("@Subdir bin/${os=windows}\npkg v\n")
    assert list(f.packages_by_subdir) == ["bin/${os=windows}"]


def test_subdir_with_spaces() -> None:
    assert list(p("@Subdir my dir\np v\n").packages_by_subdir) == ["my dir"]


def test_subdir_validate_mode_substitutes_the_host_value() -> None:
    # On linux, ${os=windows} is checked as "linux" and never skipped.
    p("@Subdir bin/${os=windows}\n")
    err = parse_error("@Subdir ${os=windows}/../x\n")
    assert err.message == 'bad subdir "linux/../x": should be simplified to "x"'


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("${bogus}", 'bad subdir "${bogus}": unknown variable "${bogus}"'),
        ("a/${os", 'bad subdir "a/${os": unable to process some variables in "a/${os"'),
        ("a\\b", 'bad subdir "a\\\\b": backslashes are not allowed (use "/")'),
        ("c:", 'bad subdir "c:": colons are not allowed'),
        ("a/./b", 'bad subdir "a/./b": should be simplified to "a/b"'),
        ("../x", 'bad subdir "../x": contains disallowed dot-path prefix'),
        ("/abs", 'bad subdir "/abs": absolute paths are not allowed'),
    ],
)
def test_subdir_parse_time_errors(raw: str, message: str) -> None:
    err = parse_error(f"\n@Subdir {raw}\n")
    assert (err.line, err.message) == (2, message)
    assert err.column == len("@Subdir ") + 1 + (raw.index("$") if "$" in raw else 0)


@pytest.mark.parametrize("head", ["@Foo", "@", "@Subdirs"])
def test_unknown_directive(head: str) -> None:
    assert parse_error(f"{head} x\n").message == f'unknown @directive: "{head}"'


# --- §5 package lines and parse errors ---------------------------------------------------


def test_package_lines_are_stored_unchecked() -> None:
    f = p("this has too many tokens\nBAD/Name ${bogus}\n")
    assert root(f) == [("this", "has too many tokens", 1), ("BAD/Name", "${bogus}", 2)]


def test_package_def_equality_ignores_line() -> None:
    assert PackageDef("a", "v", 1) == PackageDef("a", "v", 7)


def test_parse_error_shape() -> None:
    err = parse_error("# x\n\n$Nope 1\n")
    assert isinstance(err, EnsureFileError)
    assert (err.line, err.column, err.message, err.code) == (
        3,
        1,
        'unknown $setting: "$Nope"',
        "unknown-setting",
    )
    assert str(err) == 'failed to parse desired state (line 3): unknown $setting: "$Nope"'


def test_parse_error_column_points_at_the_value() -> None:
    err = parse_error("  $ParanoidMode   Wrong\n")
    assert err.column == 19


def test_parse_keeps_filename() -> None:
    assert parse("a v\n", filename="tools.ensure").filename == "tools.ensure"
    with pytest.raises(EnsureParseError) as err:
        parse("$x\n", filename="tools.ensure")
    assert err.value.filename == "tools.ensure"


def test_empty_text() -> None:
    assert p("") == EnsureFile()
