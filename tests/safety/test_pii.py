import pytest

from yilightning.safety import find_pii, mask_pii
from yilightning.safety.pii import cn_id_valid, iban_valid, luhn_valid, ssn_valid


@pytest.mark.parametrize("text, kind", [
    ("write to john.doe+news@example.co.uk today", "email"),
    ("call +44 20 7946 0958", "phone"), ("call (212) 555-0147", "phone"), ("call 212-555-0147", "phone"),
    ("手机 13800138000", "phone"),
    ("card 4111 1111 1111 1111", "card"), ("card 5500-0000-0000-0004", "card"),
    ("身份证 11010519491231002X", "cn_id"),
    ("ssn 123-45-6789", "ssn"),
    ("iban GB82 WEST 1234 5698 7654 32", "iban"),
    ("server 192.168.1.20", "ip"), ("host 2001:db8::8a2e:370:7334", "ip"),
])
def test_each_kind_is_found(text, kind):
    spans = find_pii(text)
    assert [s.kind for s in spans] == [kind]
    assert f"[{kind.upper()}]" in mask_pii(text)


@pytest.mark.parametrize("text", [
    "card 4111 1111 1111 1112",  # Luhn fails
    "id 110105194912310021",  # wrong check character
    "id 110105194913310028",  # month 13
    "ssn 000-12-3456", "ssn 666-12-3456", "ssn 912-12-3456",  # never issued
    "ip 999.1.1.1", "version 3.11.4, at 12:30:45 on 2024-01-15, pi 3.14159",
    "Example:: and std::vector and a::b",
    "iban GB00 WEST 1234 5698 7654 32",
])
def test_invalid_or_look_alike_numbers_are_not_pii(text):
    assert find_pii(text) == []


def test_checksums():
    assert luhn_valid("79927398713") and not luhn_valid("79927398710")
    assert cn_id_valid("11010519491231002X") and not cn_id_valid("11010519491231002Y")
    assert ssn_valid("123-45-6789") and not ssn_valid("123-00-6789")
    assert iban_valid("DE89 3704 0044 0532 0130 00") and not iban_valid("DE89 3704 0044 0532 0130 01")


def test_mask_keeps_the_rest_and_handles_several_spans():
    text = "a@b.io or c@d.io, 13800138000."
    assert mask_pii(text) == "[EMAIL] or [EMAIL], [PHONE]."
    assert mask_pii("") == "" and find_pii("") == []


@pytest.mark.parametrize("text, kind, found", [
    ("Connect to 192.168.1.1.", "ip", "192.168.1.1"),  # a full stop after the address
    ("card 4111 1111 1111 1111 123", "card", "4111 1111 1111 1111"),  # the CVV beside it
    ("Qty 12 4111 1111 1111 1111", "card", "4111 1111 1111 1111"),
    ("Pay BE68 5390 0754 7034 EUR", "iban", "BE68 5390 0754 7034"),  # a currency word after it
])
def test_pii_beside_neighbouring_tokens(text, kind, found):
    assert [(s.kind, s.text) for s in find_pii(text)] == [(kind, found)]


def test_all_zero_numbers_are_not_cards():
    assert find_pii("order 0000 0000 0000 0000") == []
