"""gpumarket.containers.reference: image references pinned by digest, per the OCI reference grammar."""

from __future__ import annotations

import hashlib

import pytest

from gpumarket.containers.reference import MAX_REFERENCE_CHARS, ImageReference, parse_image_reference

HEX = hashlib.sha256(b"an image manifest").hexdigest()
DIGEST = f"sha256:{HEX}"


@pytest.mark.parametrize(
    ("text", "registry", "repository"),
    [
        (f"ubuntu@{DIGEST}", None, "ubuntu"),
        (f"library/ubuntu@{DIGEST}", None, "library/ubuntu"),
        (f"team/train@{DIGEST}", None, "team/train"),
        (f"registry.example.org/team/train@{DIGEST}", "registry.example.org", "team/train"),
        (f"registry.example.org:5000/team/train@{DIGEST}", "registry.example.org:5000", "team/train"),
        (f"localhost/gpumarket-python@{DIGEST}", "localhost", "gpumarket-python"),
        (f"localhost:5000/a@{DIGEST}", "localhost:5000", "a"),
        (f"myhost:443/a/b/c@{DIGEST}", "myhost:443", "a/b/c"),  # ':' makes it a registry
        (f"Registry.Example.ORG/x@{DIGEST}", "Registry.Example.ORG", "x"),  # hosts may have uppercase
        (f"10.0.0.1:65535/x@{DIGEST}", "10.0.0.1:65535", "x"),
        (f"ghcr.io/org/my_image.v2__x--y@{DIGEST}", "ghcr.io", "org/my_image.v2__x--y"),
        (f"a-b.c/d@{DIGEST}", "a-b.c", "d"),
    ],
)
def test_valid_references_parse_and_round_trip(text, registry, repository):
    reference = parse_image_reference(text)
    assert reference == ImageReference(registry=registry, repository=repository, digest=DIGEST)
    assert str(reference) == text
    assert reference.hex == HEX
    assert reference.name == text.partition("@")[0]


def test_longest_reference_accepted():
    name = "a" * (MAX_REFERENCE_CHARS - len(DIGEST) - 1)
    text = f"{name}@{DIGEST}"
    assert len(text) == MAX_REFERENCE_CHARS
    assert str(parse_image_reference(text)) == text
    with pytest.raises(ValueError, match=f"256 characters, more than {MAX_REFERENCE_CHARS}"):
        parse_image_reference("a" + text)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("", "is empty"),
        ("ubuntu", "pin the image by digest"),
        ("ubuntu:22.04", "a tag alone (or no tag) does not fix the bytes that run"),
        ("registry.example.org/team/train:latest", "pin the image by digest"),
        (f"ubuntu:22.04@{DIGEST}", "has a tag ('22.04') as well as a digest"),
        (f"localhost:5000/a:v1@{DIGEST}", "the engine would ignore the tag"),
        (f"Ubuntu@{DIGEST}", "uppercase"),
        (f"team/Train@{DIGEST}", "uppercase"),
        (f"Team/train@{DIGEST}", "uppercase"),  # no '.', ':' or localhost: the repository, not a registry
        (f"team /train@{DIGEST}", "whitespace"),
        (f" ubuntu@{DIGEST}", "whitespace"),
        (f"ubuntu@{DIGEST}\n", "whitespace"),
        (f"ubu\x00ntu@{DIGEST}", "NUL"),
        (f"ubu\x07ntu@{DIGEST}", "control character"),
        (f"ubüntu@{DIGEST}", "non-ASCII"),
        (f"ubuntu;rm@{DIGEST}", "repository component 'ubuntu;rm'"),
        (f"$HOME/x@{DIGEST}", "repository component '$HOME'"),
        (f"a/../b@{DIGEST}", "'..'"),
        (f"a..b@{DIGEST}", "'..'"),
        (f"a//b@{DIGEST}", "empty path component"),
        (f"a/@{DIGEST}", "empty path component"),
        (f"/a@{DIGEST}", "empty path component"),
        (f"registry.example.org/@{DIGEST}", "repository name is empty"),
        (f"@{DIGEST}", "repository name is empty"),
        (f"-a@{DIGEST}", "repository component '-a'"),
        (f"a_@{DIGEST}", "repository component 'a_'"),
        (f"a___b@{DIGEST}", "repository component"),
        (f"https://registry.example.org/a@{DIGEST}", "URL scheme"),
        (f"docker://a@{DIGEST}", "URL scheme"),
        (f"-bad.org/a@{DIGEST}", "not a domain name"),
        (f"bad_host.org/a@{DIGEST}", "not a domain name"),
        (f"host.org:0/a@{DIGEST}", "1 to 65535"),
        (f"host.org:65536/a@{DIGEST}", "1 to 65535"),
        (f"host.org:08/a@{DIGEST}", "leading zeros"),
        (f"host.org:/a@{DIGEST}", "1 to 65535"),
        (f"host.org:http/a@{DIGEST}", "1 to 65535"),
        ("a@sha512:" + "0" * 128, "sha512 is not accepted; only sha256"),
        ("a@md5:" + "0" * 32, "only sha256"),
        (f"a@SHA256:{HEX}", "only sha256"),
        (f"a@{HEX}", "no algorithm"),
        ("a@sha256:" + HEX[:63], "63 hex characters, expected 64"),
        ("a@sha256:" + HEX + "0", "65 hex characters, expected 64"),
        ("a@sha256:", "0 hex characters"),
        ("a@sha256:" + HEX.upper(), "lowercase"),
        ("a@sha256:" + "g" * 64, "not hex"),
        (f"a@{DIGEST}@{DIGEST}", "more than one '@'"),
        ("a" * 200 + f"@{DIGEST}", "more than 255"),
    ],
)
def test_invalid_references_are_refused_with_the_reason(text, reason):
    with pytest.raises(ValueError) as caught:
        parse_image_reference(text)
    assert reason in str(caught.value)


def test_not_a_string():
    with pytest.raises(ValueError, match="expected a string, got bytes"):
        parse_image_reference(b"ubuntu@" + DIGEST.encode())  # type: ignore[arg-type]


def test_frozen():
    reference = parse_image_reference(f"ubuntu@{DIGEST}")
    with pytest.raises(AttributeError):
        reference.digest = "sha256:" + "0" * 64  # type: ignore[misc]
