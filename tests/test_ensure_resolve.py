"""Reference §8: resolve (order, errors, duplicates, multi-errors, verified platforms)."""

from __future__ import annotations

import hashlib
import threading
import time

import pytest

from caproni_tasks.ensure import (
    EnsureFile,
    EnsureFileError,
    MultiError,
    PackageDef,
    Pin,
    ResolvedFile,
    host_template_args,
    instance_id_from_sha256,
    parse,
    platform_template_args,
    resolve_for_platforms,
)

LINUX = platform_template_args("linux", "amd64")
MAC = platform_template_args("mac", "arm64")
IID = instance_id_from_sha256(hashlib.sha256(b"x").digest())


def iid_of(package: str, version: str) -> str:
    return instance_id_from_sha256(hashlib.sha256(f"{package}@{version}".encode()).digest())


class FakeRepo:
    """Resolves every valid (package, version) to a deterministic ID; counts calls."""

    def __init__(self, missing: set[tuple[str, str]] | None = None) -> None:
        self.calls: list[tuple[str, str]] = []
        self.missing = missing or set()
        self.lock = threading.Lock()

    def __call__(self, package: str, version: str) -> Pin:
        with self.lock:
            self.calls.append((package, version))
        if (package, version) in self.missing:
            raise LookupError("no such version")
        return Pin(package, iid_of(package, version))


def resolve(text: str, args: dict[str, str] = LINUX, **kw: bool) -> ResolvedFile:
    return parse(text, host_args=LINUX).resolve(FakeRepo(), template_args=args, **kw)


def resolve_error(text: str, args: dict[str, str] = LINUX) -> str:
    with pytest.raises(EnsureFileError) as err:
        resolve(text, args)
    return str(err.value)


def test_settings_are_carried_and_paranoid_mode_defaults() -> None:
    r = resolve("$ServiceURL https://x\n$OverrideInstallMode copy\n")
    assert (r.service_url, r.paranoid_mode, r.override_install_mode) == (
        "https://x",
        "NotParanoid",
        "copy",
    )
    assert r.packages_by_subdir == {}
    assert resolve("$ParanoidMode CheckIntegrity\n").paranoid_mode == "CheckIntegrity"


def test_bad_service_url_is_revalidated() -> None:
    f = EnsureFile(service_url="nope", packages_by_subdir={"": [PackageDef("a", "latest", 1)]})
    with pytest.raises(EnsureFileError) as err:
        f.resolve(FakeRepo(), template_args=LINUX)
    assert str(err.value) == 'bad ServiceURL: parse "nope": missing protocol scheme'


def test_no_packages_is_an_empty_result() -> None:
    assert resolve("# nothing\n") == ResolvedFile()


def test_templates_expand_and_pins_come_from_the_resolver() -> None:
    r = resolve("tools/${platform} latest\n@Subdir bin/${os}\nx/${arch} v:1\n")
    assert r.packages_by_subdir == {
        "": [Pin("tools/linux-amd64", iid_of("tools/linux-amd64", "latest"))],
        "bin/linux": [Pin("x/amd64", iid_of("x/amd64", "v:1"))],
    }


def test_default_template_args_are_the_host() -> None:
    f = parse("t/${platform} latest\n")
    host = host_template_args()["platform"]
    assert f.resolve(FakeRepo()).packages_by_subdir[""][0].package == f"t/{host}"


def test_skipped_subdir_drops_its_lines_even_invalid_ones() -> None:
    r = resolve("@Subdir win/${os=windows}\nBAD NAME\nok/pkg latest\n")
    assert r.packages_by_subdir == {}


def test_skipped_package_line_is_dropped() -> None:
    r = resolve("a/${os=mac} latest\nb latest\n")
    assert [p.package for p in r.packages_by_subdir[""]] == ["b"]


def test_subdir_expansion_error() -> None:
    f = EnsureFile(packages_by_subdir={"${bogus}": [PackageDef("a", "latest", 1)]})
    with pytest.raises(EnsureFileError) as err:
        f.resolve(FakeRepo(), template_args=LINUX)
    assert str(err.value) == 'normalizing "${bogus}": unknown variable "${bogus}"'


def test_expanded_subdir_must_be_valid() -> None:
    text = "@Subdir ${os}\na latest\n"
    message = resolve_error(text, {"os": "../up", "arch": "x", "platform": "p"})
    assert message == (
        'normalizing "${os}": bad subdir "../up": contains disallowed dot-path prefix'
    )


def test_package_template_expansion_error() -> None:
    assert resolve_error("\na/${bogus} latest\n") == (
        'failed to expand package template (line 2): unknown variable "${bogus}"'
    )


def test_bad_package_name() -> None:
    assert resolve_error("A/b latest\n") == (
        'bad package name (line 1): invalid package name "A/b": must be a slash-separated '
        'path where each component matches "[a-z0-9_\\-\\.]+"'
    )


def test_bad_package_version() -> None:
    assert resolve_error("a/b has too many tokens\n") == (
        'bad package version (line 1): bad version "has too many tokens": '
        "not an instance ID, a ref or a tag"
    )


def test_name_checked_before_version() -> None:
    assert resolve_error("A BAD VERSION\n").startswith("bad package name (line 1)")


def test_first_expansion_or_validation_error_is_returned_alone() -> None:
    message = resolve_error("b/${x} latest\nA latest\n@Subdir a\nc BAD\n")
    # Subdirs in byte order: "" before "a"; within "", file order.
    assert message == 'failed to expand package template (line 1): unknown variable "${x}"'


def test_subdirs_are_processed_in_byte_order() -> None:
    assert resolve_error("@Subdir b\nX latest\n@Subdir a\nY latest\n").startswith(
        "bad package name (line 4)"
    )


def test_each_distinct_package_version_resolved_once() -> None:
    repo = FakeRepo()
    parse("a latest\n@Subdir x\na latest\nb v:1\n@Subdir y\nb v:1\n").resolve(
        repo, template_args=LINUX
    )
    assert sorted(repo.calls) == [("a", "latest"), ("b", "v:1")]


def test_instance_id_versions_need_no_lookup() -> None:
    repo = FakeRepo()
    sha1 = hashlib.sha1(b"y").hexdigest()
    r = parse(f"a {IID}\nb {sha1}\n", host_args=LINUX).resolve(repo, template_args=LINUX)
    assert repo.calls == []
    assert r.packages_by_subdir[""] == [Pin("a", IID), Pin("b", sha1)]


def test_resolve_failure() -> None:
    f = parse("\nmissing/pkg latest\n", host_args=LINUX)
    with pytest.raises(EnsureFileError) as err:
        f.resolve(FakeRepo({("missing/pkg", "latest")}), template_args=LINUX)
    assert str(err.value) == "failed to resolve missing/pkg@latest (line 2): no such version"


def test_duplicate_package() -> None:
    assert resolve_error("a latest\nb latest\na v:2\n") == (
        'duplicate package in subdir "": "a": defined on line 1 and 3'
    )


def test_raw_subdirs_expanding_alike_merge_in_byte_order() -> None:
    # "${os}" sorts before "linux" in byte order, so its line comes first.
    message = resolve_error("@Subdir linux\nt/x latest\n@Subdir ${os}\nt/x v:1\n")
    assert message == 'duplicate package in subdir "linux": "t/x": defined on line 4 and 2'
    r = resolve("@Subdir linux\na latest\n@Subdir ${os}\nb latest\n")
    assert [p.package for p in r.packages_by_subdir["linux"]] == ["b", "a"]


def test_allow_duplicates() -> None:
    r = resolve("a latest\na v:2\n", allow_duplicates=True)
    assert [p.package for p in r.packages_by_subdir[""]] == ["a", "a"]


def test_several_errors_are_listed() -> None:
    f = parse("a latest\nb latest\na v:1\n", host_args=LINUX)
    with pytest.raises(MultiError) as err:
        f.resolve(FakeRepo({("b", "latest")}), template_args=LINUX)
    assert str(err.value) == (
        "err[0]: failed to resolve b@latest (line 2): no such version\n"
        'err[1]: duplicate package in subdir "": "a": defined on line 1 and 3'
    )


def test_at_most_twenty_errors_are_listed() -> None:
    text = "".join(f"p{i} latest\n" for i in range(25))
    f = parse(text, host_args=LINUX)
    missing = {(f"p{i}", "latest") for i in range(25)}
    with pytest.raises(MultiError) as err:
        f.resolve(FakeRepo(missing), template_args=LINUX)
    lines = str(err.value).split("\n")
    assert len(lines) == 21
    assert lines[0] == "err[0]: failed to resolve p0@latest (line 1): no such version"
    assert lines[19].startswith("err[19]: ")
    assert lines[20] == "err[20:25] <omitted>"


def test_resolver_exceptions_of_any_kind_become_errors() -> None:
    def broken(package: str, version: str) -> Pin:
        raise RuntimeError("backend down")

    with pytest.raises(
        EnsureFileError, match="failed to resolve a@latest \\(line 1\\): backend down"
    ):
        parse("a latest\n").resolve(broken, template_args=LINUX)


def test_slow_resolvers_run_in_parallel(monkeypatch: pytest.MonkeyPatch) -> None:
    threads: set[str] = set()

    def slow(package: str, version: str) -> Pin:
        threads.add(threading.current_thread().name)
        time.sleep(0.01)
        return Pin(package, IID)

    text = "".join(f"p{i} latest\n" for i in range(16))
    r = parse(text).resolve(slow, template_args=LINUX)
    assert len(r.packages_by_subdir[""]) == 16
    assert any(name.startswith("ensure-resolve") for name in threads)


def test_fast_resolvers_stay_on_the_calling_thread() -> None:
    threads: set[str] = set()

    def fast(package: str, version: str) -> Pin:
        threads.add(threading.current_thread().name)
        return Pin(package, IID)

    parse("".join(f"p{i} latest\n" for i in range(50))).resolve(fast, template_args=LINUX)
    assert threads == {threading.current_thread().name}


# --- verified platforms ----------------------------------------------------------------


def test_resolve_for_every_verified_platform() -> None:
    f = parse("$VerifiedPlatform linux-amd64 mac-arm64\nt/${platform} latest\n")
    result = resolve_for_platforms(f, FakeRepo())
    assert list(result) == [("linux", "amd64"), ("mac", "arm64")]
    assert result[("mac", "arm64")].packages_by_subdir[""][0].package == "t/mac-arm64"


def test_platform_errors_are_prefixed_in_declaration_order() -> None:
    f = parse(
        "$VerifiedPlatform windows-amd64 linux-amd64 mac-arm64\n"
        "t/${os=linux,windows}/${bogus} latest\n"
    )
    with pytest.raises(MultiError) as err:
        resolve_for_platforms(f, FakeRepo())
    assert str(err.value) == (
        "err[0]: when resolving windows-amd64: failed to expand package template (line 2): "
        'unknown variable "${bogus}"\n'
        "err[1]: when resolving linux-amd64: failed to expand package template (line 2): "
        'unknown variable "${bogus}"'
    )


def test_single_platform_error_is_shown_as_itself() -> None:
    f = parse("$VerifiedPlatform mac-arm64\nT/${os=mac} latest\n")
    with pytest.raises(EnsureFileError) as err:
        resolve_for_platforms(f, FakeRepo())
    assert str(err.value).startswith("when resolving mac-arm64: bad package name (line 2)")


def test_platforms_share_lookups() -> None:
    repo = FakeRepo()
    f = parse("$VerifiedPlatform linux-amd64 mac-arm64\ncommon/tool latest\n")
    resolve_for_platforms(f, repo)
    assert repo.calls == [("common/tool", "latest")]


def test_no_verified_platform_means_host() -> None:
    result = resolve_for_platforms(parse("a latest\n"), FakeRepo())
    host = host_template_args()
    assert list(result) == [(host["os"], host["arch"])]


def test_mac_args() -> None:
    assert resolve("x/${os=mac} latest\n", MAC).packages_by_subdir[""][0].package == "x/mac"


def test_a_failed_lookup_is_reported_on_every_line_that_uses_it() -> None:
    repo = FakeRepo({("a/b", "latest")})
    f = parse("@Subdir ${os}\na/b latest\n@Subdir linux\na/b latest\n", host_args=LINUX)
    with pytest.raises(MultiError) as err:
        f.resolve(repo, template_args=LINUX)
    assert str(err.value) == (
        "err[0]: failed to resolve a/b@latest (line 2): no such version\n"
        "err[1]: failed to resolve a/b@latest (line 4): no such version"
    )
    assert repo.calls == [("a/b", "latest")]


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (Pin("a", "not-an-id"), 'not a valid package instance ID "not-an-id": '),
        (Pin("other", IID), 'the resolver returned a pin of "other", expecting "a"'),
    ],
)
def test_the_resolvers_answer_must_be_a_valid_pin_of_the_package(answer: Pin, reason: str) -> None:
    with pytest.raises(EnsureFileError) as err:
        parse("a latest\n").resolve(lambda package, version: answer, template_args=LINUX)
    assert str(err.value).startswith(f"failed to resolve a@latest (line 1): {reason}")


def test_a_resolver_may_answer_with_any_hash_algorithm() -> None:
    import base64

    unknown_algo = base64.urlsafe_b64encode(bytes(32) + b"\x07").rstrip(b"=").decode()
    r = parse("a latest\n").resolve(lambda p, v: Pin(p, unknown_algo), template_args=LINUX)
    assert r.packages_by_subdir[""] == [Pin("a", unknown_algo)]


def test_several_errors_of_several_platforms_form_one_flat_list() -> None:
    f = parse("$VerifiedPlatform linux-amd64 mac-arm64\na latest\nb latest\n")
    with pytest.raises(MultiError) as err:
        resolve_for_platforms(f, FakeRepo({("a", "latest"), ("b", "latest")}))
    assert str(err.value) == (
        "err[0]: when resolving linux-amd64: failed to resolve a@latest (line 2): no such version\n"
        "err[1]: when resolving linux-amd64: failed to resolve b@latest (line 3): no such version\n"
        "err[2]: when resolving mac-arm64: failed to resolve a@latest (line 2): no such version\n"
        "err[3]: when resolving mac-arm64: failed to resolve b@latest (line 3): no such version"
    )


def test_a_paranoid_mode_set_through_the_api_is_checked_again() -> None:
    f = EnsureFile(paranoid_mode="Paranoid", packages_by_subdir={"": [PackageDef("a", "v:1")]})
    with pytest.raises(EnsureFileError) as err:
        f.resolve(FakeRepo(), template_args=LINUX)
    assert str(err.value) == 'unrecognized paranoid mode "Paranoid"'
