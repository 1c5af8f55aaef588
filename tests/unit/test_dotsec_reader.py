"""The dotsec reader beyond the vectors: grammar quirks (spec §2, each observed on dotsec 7.0.1), the header's
strict checks (§3), attachment rules (§4), schema hash (§8.3) and evaluation (§8.5), the plaintext policy,
bounds, and that no value reaches an error, a repr or a report."""

from __future__ import annotations

import hashlib

import pyrage
import pytest

from tests.dotsec_writer import schema_sha256, write_sec
from vaultbundle import dotsec, errors
from vaultbundle.dotsec import grammar, model
from vaultbundle.dotsec.header import parse_header
from vaultbundle.dotsec.schema import EMPTY_SHA256, parse_schema

GOOD_MAC = "A" * 43 + "="
GOOD_DEK = "YWdl"


def pairs(text: str) -> list[tuple[str, str]]:
    return [(entry.key, entry.value) for entry in model.load(text).entries]


# -- grammar ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    ["export A=1", "A = 1", "A =1", "A= 1", "A=  ", "A=#x", "A=//cdn.example.com", "A= # c", "A=\t1", "export\tA=1"],
)
def test_silently_dropped_lines(line: str) -> None:
    assert pairs(f"{line}\nB=2\n") == [("B", "2")]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("exportA=1", ("A", "1")),
        ("exporter=1", ("er", "1")),
        ("export_dir=/x", ("_dir", "/x")),
        ('A="a\\nb"', ("A", "a\\nb")),
        ('A="\\""', ("A", '\\"')),
        ('A="a\\qb"', ("A", '"a\\qb"')),
        ('A="open', ("A", '"open')),
        ('A="\\u00e9"', ("A", "\\u00e9")),
        ("A='x y'", ("A", "x y")),
        ("A=`x`", ("A", "x")),
        ("A=1   ", ("A", "1   ")),
        ("A=1 # c", ("A", "1 # c")),
        ("A=# @encrypt", ("A", "# @encrypt")),
        ("A=", ("A", "")),
        ("A.b-c=1", ("A.b-c", "1")),
        ("A=x\r", ("A", "x")),
        ("A=ENC[abc", ("A", "ENC[abc")),
    ],
)
def test_entry_forms(line: str, expected: tuple[str, str]) -> None:
    assert pairs(line) == [expected]


def test_multiline_quoted_values_and_crlf() -> None:
    assert pairs('A="x\r\ny"\r\nB=`1\n2`\r\nC=3\r\n') == [("A", "x\r\ny"), ("B", "1\n2"), ("C", "3")]


def test_a_lone_cr_is_text() -> None:
    assert pairs("A=x\ry\nB=1") == [("A", "x\ry"), ("B", "1")]


@pytest.mark.parametrize(
    "text",
    [
        "1A=1",
        "-A=1",
        "\u00c4=1",
        "\ufeffA=1",
        "export=1",
        "# @bogus",
        "@encrypt\nA=1",
        "# @encrypted\nA=1",
        "# @encrypt trailing\nA=1",
        "# @encrypt @bogus\nA=1",
        "# @encrypt # @plaintext\nA=1",
        '# @type=enum("a" ,"b")\nA=1',
        "# @max=1e5\nA=1",
        "# @min=.5\nA=1",
        "# @min=1.\nA=1",
        "# @deprecated=x\nA=1",
        "# @description=x @ y\nA=1",
        "# @provider=\nA=1",
        "# @encrypt\t@plaintext\nA=1",
        "# @dotsec(format=v3, mac=, dek=x)\nA=1",
        'KEY="a" B=1',
        'KEY="a"x',
        "A='it''s'",
        "garbage",
        "A",
    ],
)
def test_parse_errors(text: str) -> None:
    with pytest.raises(errors.DotsecParseError, match=r"line \d+, column \d+"):
        model.load(text)


@pytest.mark.parametrize("text", ["# @1x\nA=1", "#\t@encrypt\nA=1", "#@ x\nA=1", "// @encrypt\nA=1", "#\nA=1", ""])
def test_comments_that_look_like_directives(text: str) -> None:
    assert model.load(text).entries == (() if not text else (model.Entry("A", "1", ()),))


def test_directive_values_as_the_mac_sees_them() -> None:
    items = grammar.parse(
        '# @type=enum("a", "b") @pattern="^x$" @deprecated="use B" @description=  Two words  @min=-1.5'
        ' @push=aws-ssm(path="/p"), aws-secrets-manager @format=uuid @key-id=alias/k\nA=1'
    )
    directives = [(d.name, d.value) for d in items if isinstance(d, grammar.Directive)]
    assert directives == [
        ("type", 'enum("a", "b")'),
        ("pattern", "^x$"),
        ("deprecated", "use B"),
        ("description", "Two words"),
        ("min", "-1.5"),
        ("push", 'aws-ssm(path="/p"), aws-secrets-manager'),
        ("format", "uuid"),
        ("key-id", "alias/k"),
    ]


def test_text_directive_runs_to_the_end_of_the_line_with_hashes() -> None:
    (directive, _pair) = grammar.parse("# @description=a # b\nA=1")
    assert directive == grammar.Directive("description", "a # b")


def test_attachment_rules() -> None:
    sec = model.load(
        "# @provider=local @default-encrypt\n"
        "# @type=string\n\n"  # a blank line keeps it attached
        "A=1\n"
        "# @encrypt # trailing comment detaches\n"
        "B=2\n"
        "# @not-empty\n"
        "# a comment line detaches too\n"
        "C=3\n"
        "# @plaintext\n"
        "export D=4\n"  # dropped: does not take the pending directive
        "E=5\n"
    )
    got = {e.key: ([d.name for d in e.directives], e.synthetic_encrypt) for e in sec.entries}
    assert got == {
        "A": (["encrypt", "type"], True),
        "B": (["encrypt"], True),
        "C": (["encrypt"], True),
        "E": (["plaintext"], False),
    }
    assert [d.name for d in sec.file_directives] == ["provider", "default-encrypt", "type"]
    assert sec.setting("provider") == "local"


def test_header_location_rules() -> None:
    assert model.load("# @dotsec(format=v3)\n# @dotsec(format=v9)\nA=1").header == "format=v3"
    assert model.load("A=1\n# @dotsec(format=v3)\nB=1").header is None


def test_bounds() -> None:
    with pytest.raises(errors.DotsecParseError, match="limit"):
        model.load("A=" + "x" * (grammar.MAX_LINE_CHARS + 1))
    with pytest.raises(errors.DotsecParseError, match="limit"):
        model.load("A=1\n" * (grammar.MAX_TEXT_CHARS // 4 + 1))
    with pytest.raises(errors.DotsecParseError, match="entries"):
        model.load("A=1\n" * (model.MAX_ENTRIES + 1))


# -- header -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (f"mac={GOOD_MAC}, dek={GOOD_DEK}", errors.DotsecHeaderInvalidError),  # no format
        (f"format=v4, mac={GOOD_MAC}, dek={GOOD_DEK}", errors.DotsecUnsupportedFormatError),
        (f"format=v3, dek={GOOD_DEK}", errors.DotsecHeaderInvalidError),
        (f"format=v3, mac={GOOD_MAC}", errors.DotsecHeaderInvalidError),
        (f"format=v3, mac={GOOD_MAC}, mac={GOOD_MAC}, dek={GOOD_DEK}", errors.DotsecHeaderInvalidError),
        (f"format=v3, mac={GOOD_MAC}, dek={GOOD_DEK}, dek={GOOD_DEK}", errors.DotsecHeaderInvalidError),
        (f"format=v3, mac={GOOD_MAC[:-1]}, dek={GOOD_DEK}", errors.DotsecHeaderInvalidError),  # unpadded
        (f"format=v3, mac={'A' * 42}B=, dek={GOOD_DEK}", errors.DotsecHeaderInvalidError),  # non-zero trailing bits
        (f"format=v3, mac={'A' * 22}==, dek={GOOD_DEK}", errors.DotsecHeaderInvalidError),  # 16 bytes
        (f"format=v3, mac={'A' * 65}, dek={GOOD_DEK}", errors.DotsecHeaderInvalidError),
        (f"format=v3, mac={GOOD_MAC}, dek={'A' * 2052}", errors.DotsecHeaderInvalidError),
        (f"format=v3, mac={GOOD_MAC}, dek=@@@@", errors.DotsecHeaderInvalidError),
    ],
)
def test_header_errors(body: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        parse_header(body)


def test_header_order_free_last_format_wins_unknown_ignored() -> None:
    header = parse_header(f"dek={GOOD_DEK}, future=1, format=v2, mac={GOOD_MAC}, format=v3")
    assert header.mac == b"\0" * 32 and header.wrapped_dek == b"age"
    assert "AAAA" not in repr(header)


# -- the read order, policy and redaction --------------------------------------------------------------------

BODY = "# @provider=local @default-encrypt\nTOKEN=<<canary-7f3e9b>>\n# @plaintext\nPORT=8080\n"


def test_read_order_provider_before_header() -> None:
    with pytest.raises(errors.DotsecProviderInvalidError):
        dotsec.open("# @provider=gcp\nA=ENC[x]\n", dotsec.AgeIdentity(""))
    with pytest.raises(errors.DotsecProviderInvalidError, match="no @provider"):
        dotsec.open(f"# @dotsec(format=v3, mac={GOOD_MAC}, dek={GOOD_DEK})\nA=1\n", dotsec.AgeIdentity(""))
    with pytest.raises(errors.DotsecParseError):  # a broken file is reported before a broken identity
        dotsec.open("garbage", dotsec.AgeIdentity("not-an-identity"))


def test_identity_file_rules() -> None:
    text, identity, _ = write_sec(BODY)
    key_file = f"# created: 2026\n# public key: age1xyz\n{identity}   \n"
    values, _ = dotsec.open(text, dotsec.AgeIdentity.from_key_file(key_file))
    assert values["TOKEN"] == "canary-7f3e9b"
    with pytest.raises(errors.DotsecIdentityInvalidError, match="no age identity"):
        dotsec.open(text, dotsec.AgeIdentity.from_key_file(f"# x\n{identity.lower()}\n"))
    recipient = str(pyrage.x25519.Identity.from_str(identity).to_public())
    with pytest.raises(errors.DotsecIdentityInvalidError):
        dotsec.open(text, dotsec.AgeIdentity(recipient))
    assert identity not in repr(dotsec.AgeIdentity(identity))


def test_oversize_wrapped_dek_is_refused_before_the_identity_is_parsed() -> None:
    text, _, _ = write_sec(BODY, wrapped_dek=b"x" * 1100)
    with pytest.raises(errors.DotsecDekUnwrapFailedError, match="1100 bytes"):
        dotsec.open(text, dotsec.AgeIdentity("garbage"))


def test_plaintext_policy() -> None:
    text, identity, _ = write_sec(BODY)
    key = dotsec.AgeIdentity(identity)
    _, report = dotsec.open(text, key, plaintext=dotsec.PlaintextPolicy.ALLOW)
    assert report.plaintext_keys == ("PORT",) and not report.warnings
    _, report = dotsec.open(text, key, plaintext=dotsec.PlaintextPolicy.WARN)
    assert report.warnings == ("PORT: plaintext value(s), not covered by the file MAC",)
    with pytest.raises(errors.DotsecPlaintextRefusedError, match="PORT"):
        dotsec.open(text, key, plaintext=dotsec.PlaintextPolicy.REFUSE)


def test_plaintext_values_are_not_authenticated_but_names_are() -> None:
    text, identity, _ = write_sec(BODY)
    key = dotsec.AgeIdentity(identity)
    assert dotsec.open(text.replace("PORT=8080", "PORT=9999"), key)[0]["PORT"] == "9999"
    with pytest.raises(errors.DotsecMacMismatchError, match="no schema"):
        dotsec.open(text.replace("PORT=8080", "PORTS=8080"), key)


def test_duplicates_last_wins_with_a_warning() -> None:
    text, identity, _ = write_sec("# @provider=local\nA=1\nA=2\n")
    values, report = dotsec.open(text, dotsec.AgeIdentity(identity))
    assert values.pairs == (("A", "1"), ("A", "2")) and values["A"] == "2"
    assert report.duplicates == ("A",) and "the last occurrence wins" in report.warnings[0]


def test_errors_and_reprs_never_show_values() -> None:
    text, identity, _ = write_sec(BODY.replace("# @plaintext\n", "# @plaintext @type=number @max=10\n"))
    key = dotsec.AgeIdentity(identity)
    with pytest.raises(errors.SchemaViolationError) as caught:
        dotsec.open(text, key)
    assert "8080" not in str(caught.value) and "PORT: @max=10: above the maximum" in str(caught.value)
    values, report = dotsec.open(text.replace("PORT=8080", "PORT=7"), key)
    assert "canary-7f3e9b" not in repr(values) + repr(report) + repr(model.load(text).entries)


# -- schema ---------------------------------------------------------------------------------------------------


def test_schema_hash_invariants() -> None:
    base = parse_schema("# @type=number @min=1\nPORT\n# @optional\nTOKEN\n").sha256
    assert (
        parse_schema("# c\n# @min=1 @type=number @description=x @deprecated\n\nPORT\n# @optional\nTOKEN").sha256 == base
    )
    assert parse_schema("# @optional\nTOKEN\n# @type=number @min=1\nPORT\n").sha256 != base
    assert parse_schema("# @type=number @min=2\nPORT\n# @optional\nTOKEN\n").sha256 != base
    assert parse_schema("").sha256 == hashlib.sha256(b"schema-canonical-v1\n").hexdigest() != EMPTY_SHA256
    duplicate = parse_schema("# @optional\nA\nB\n# @type=number\nA\n")
    assert list(duplicate.rules) == ["A", "B"] and duplicate.rules["A"] == (grammar.Directive("type", "number"),)


def test_schema_parse_errors_are_schema_invalid() -> None:
    for text in ("KEY=value", "# @bogus\nA", "A B"):
        with pytest.raises(errors.DotsecSchemaInvalidError):
            parse_schema(text)


def _open_with_schema(body: str, schema: str) -> dotsec.Report:
    text, identity, _ = write_sec(body, schema_sha256=schema_sha256(schema))
    return dotsec.open(text, dotsec.AgeIdentity(identity), schema)[1]


def _violations(body: str, schema: str) -> tuple[str, ...]:
    with pytest.raises(errors.SchemaViolationError) as caught:
        _open_with_schema(body, schema)
    return caught.value.violations


def test_schema_binding_needs_the_same_schema() -> None:
    schema = "# @type=number\nPORT\n"
    text, identity, _ = write_sec("# @provider=local\nPORT=1\n", schema_sha256=schema_sha256(schema))
    key = dotsec.AgeIdentity(identity)
    assert dotsec.open(text, key, schema)[0]["PORT"] == "1"
    with pytest.raises(errors.DotsecMacMismatchError, match="no schema"):
        dotsec.open(text, key)
    with pytest.raises(errors.DotsecMacMismatchError, match="schema sha256"):
        dotsec.open(text, key, "# @type=string\nPORT\n")


@pytest.mark.parametrize(
    ("rule", "good", "bad"),
    [
        ("@type=number", ["1", "-2.5", "1e0", "NaN", "inf", "+Infinity", "1.", ".5"], [" 5", "1_0", "0x1", "", "e5"]),
        ("@type=boolean", ["true", "false", "1", "0"], ["TRUE", "yes", ""]),
        ("@type=bool", ["true"], ["no"]),
        ('@type=enum("dev", "prod", "")', ["dev", "prod", ""], ["Dev", "staging"]),
        ("@type=number @min=1 @max=10", ["1", "10", "NaN", "5e0"], ["0.5", "11", "inf", "-inf"]),
        ("@min=5 @max=6", ["1", "100", "x"], []),  # bounds only apply to @type=number
        ("@min-length=3 @max-length=4", ["ééé", "abcd"], ["ab", "abcde"]),
        ("@min-length=1.5", [], ["anything"]),
        ('@pattern="[0-9]+"', ["x12y", "7"], ["abc", ""]),
        ('@pattern="^[a-z]+$"', ["abc"], ["abc1"]),
        ('@pattern="\\p{Lu}"', ["aÄb"], ["abc"]),
        ('@pattern="(a)\\1"', [], ["aa"]),
        ('@pattern="a(?=b)"', [], ["ab"]),
        ("@format=email", ["a@b.c", "x.y@mail.example.org"], ["a@b", "@b.c", "a@.c", "a@b."]),
        ("@format=url", ["http://x", "https://x"], ["ftp://x", "HTTP://x"]),
        (
            "@format=uuid",
            ["123e4567-e89b-12d3-a456-426614174000"],
            ["123e4567e89b12d3a456426614174000", "g" * 8 + "-1234-1234-1234-123456789012"],
        ),
        ("@format=ipv4", ["10.0.0.1", "+1.2.3.004"], ["256.1.1.1", "1.2.3", "a.b.c.d"]),
        ("@format=ipv6", ["::1", "fe80::1:2", "1:2:3:4:5:6:7:8"], ["::", "12345::", "1:2:3:4:5:6:7:8:9", "x::"]),
        (
            "@format=date",
            ["2024-02-29", "2023-02-29", "2024-12-31"],
            ["2024-02-30", "2024-04-31", "0000-01-01", "24-01-01", "2024-13-01"],
        ),
        ("@format=semver", ["1.2.3", "1.2.3-rc.1"], ["1.2", "v1.2.3", "1.2.x"]),
        ("@not-empty", ["x"], [""]),
    ],
)
def test_value_rules(rule: str, good: list[str], bad: list[str]) -> None:
    for value in good:
        report = _open_with_schema(f"# @provider=local @default-plaintext\nV=<<{value}>>\n", f"# {rule}\nV\n")
        assert report.mac_verified, value
    for value in bad:
        (violation,) = _violations(f"# @provider=local @default-plaintext\nV=<<{value}>>\n", f"# {rule}\nV\n")
        assert violation.startswith("V: @"), violation
        if len(value) >= 3:
            assert value not in violation


def test_required_optional_unknown_inline_and_deprecated() -> None:
    schema = '# @optional\nOPT\nREQ\n# @deprecated="use NEW"\nOLD\n'
    violations = _violations("# @provider=local\n# @plaintext\nOLD=1\nEXTRA=2\n", schema)
    assert violations == (
        "REQ: required: required by the schema but missing",
        "OLD: @plaintext: inline directive not allowed with a schema (dotsec remove-directives)",
    )
    report = _open_with_schema("# @provider=local @default-encrypt\nOLD=<<1>>\nREQ=<<2>>\nEXTRA=<<3>>\n", schema)
    assert report.warnings == ("EXTRA: schema: not defined in the schema", "OLD: @deprecated: deprecated: use NEW")


def test_without_a_schema_inline_directives_are_checked() -> None:
    text, identity, _ = write_sec("# @provider=local\n# @type=number\nN=abc\n")
    with pytest.raises(errors.SchemaViolationError, match="N: @type=number: expected a number"):
        dotsec.open(text, dotsec.AgeIdentity(identity))
    assert dotsec.open(text, dotsec.AgeIdentity(identity), validate=False)[0]["N"] == "abc"


def test_check_values_for_any_source() -> None:
    schema = parse_schema("# @type=number\nPORT\nHOST\n")
    findings = dotsec.check_values({"PORT": "x", "OTHER": "1"}, schema)
    assert [str(f) for f in findings if f.error] == [
        "HOST: required: required by the schema but missing",
        "PORT: @type=number: expected a number",
    ]


def test_validate_structure_without_a_key() -> None:
    schema = "# @type=number\nPORT\n# @min-length=99\nTOKEN\nMISSING\n"
    text, _, _ = write_sec(
        "# @provider=local @default-plaintext\nTOKEN=<<short>>\nPORT=abc\n", schema_sha256=schema_sha256(schema)
    )
    with pytest.raises(errors.SchemaViolationError) as caught:
        dotsec.validate_structure(text, schema)
    assert caught.value.violations == (
        "MISSING: required: required by the schema but missing",
        "PORT: @type=number: expected a number",
    )  # TOKEN's @min-length cannot be seen without the key
    report = dotsec.validate_structure(text.replace("PORT=abc", "PORT=1"), schema.replace("MISSING\n", ""))
    assert report.unchecked_keys == ("TOKEN",) and not report.mac_verified


def test_a_pattern_that_backtracks_forever_is_cut_off() -> None:
    """Rust's regex is linear-time; Python's backtracks. A pathological pattern becomes a violation, not a hang."""
    from vaultbundle.dotsec import rules

    (finding,) = rules.check([rules.Subject("V", "a" * 60 + "_")], parse_schema('# @pattern="(a|aa)+$"\nV\n'))
    assert finding.error and "took longer than" in finding.message
