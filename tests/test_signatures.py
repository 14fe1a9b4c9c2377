import pytest

from worker.apiframe.signatures import sign, verify_signature

KEY = "afk_0000000000000000000000000000000000000000"
BODY = b'{"jobId":"abc","status":"COMPLETED"}'
VARIANT_A = "sha256=58e6d7af820911d918b1b43ade255ec260002ca8b24ba46dd057a99d192c89f4"
VARIANT_B = "sha256=2cb660473e59908c969f761f7444eda6c9067d13d2d83a0057fb8fb5197c60af"


def test_signs_apiframes_published_vectors() -> None:
    """Both key derivations reproduce the test vectors in the Apiframe contract."""
    assert sign(BODY, KEY, "A") == VARIANT_A
    assert sign(BODY, KEY, "B") == VARIANT_B


@pytest.mark.parametrize(
    ("header", "variant"),
    [
        (VARIANT_A, "A"),
        (VARIANT_B, "B"),
        (VARIANT_A.removeprefix("sha256="), "A"),
        (VARIANT_B.upper().replace("SHA256=", "sha256="), "B"),
    ],
)
def test_verifies_either_variant_with_or_without_prefix(header: str, variant: str) -> None:
    """A signature verifies under either derivation, prefixed or bare, in any letter case."""
    assert verify_signature(BODY, header, ["afk_other", KEY]) == variant


@pytest.mark.parametrize(
    ("body", "header", "keys"),
    [
        (BODY + b" ", VARIANT_A, [KEY]),
        (BODY, VARIANT_A, ["afk_someone_else"]),
        (BODY, "sha256=", [KEY]),
        (BODY, "not a signature", [KEY]),
        (BODY, VARIANT_A, []),
    ],
)
def test_refuses_anything_else(body: bytes, header: str, keys: list[str]) -> None:
    """A changed body, another key, or a malformed header does not verify."""
    assert verify_signature(body, header, keys) is None
