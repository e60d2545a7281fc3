"""Detail parsers read only captured bytes: a field cut by the snaplen gives no detail, never part of one."""

from __future__ import annotations

from dpi_samples import SERVER_NAME, client_hello

from collectors.dpi_details import server_name, ssh_software


def test_server_name_of_a_real_client_hello() -> None:
    assert server_name(client_hello()) == SERVER_NAME
    assert server_name(client_hello("a.b")) == "a.b"


def test_client_hello_without_server_name() -> None:
    # An IP literal is never sent as SNI (RFC 6066 3), so OpenSSL omits the extension.
    assert server_name(client_hello("10.0.0.1")) == ""


def test_every_truncation_gives_the_whole_name_or_nothing() -> None:
    hello = client_hello()
    end_of_name = hello.index(SERVER_NAME.encode()) + len(SERVER_NAME)
    for cut in range(len(hello) + 1):
        assert server_name(hello[:cut]) == (SERVER_NAME if cut >= end_of_name else "")


def test_lengths_that_lie_are_not_followed() -> None:
    hello = bytearray(client_hello())
    name_at = hello.index(SERVER_NAME.encode())
    hello[name_at - 2 : name_at] = (4000).to_bytes(2, "big")
    assert server_name(bytes(hello)) == ""
    assert server_name(b"\x16\x03\x01\x00\x05\x01\x00\x00\x01") == ""
    assert server_name(b"") == ""


def test_a_name_with_bytes_a_hostname_cannot_hold_is_dropped() -> None:
    hello = bytearray(client_hello())
    name_at = hello.index(SERVER_NAME.encode())
    hello[name_at] = 0x07
    assert server_name(bytes(hello)) == ""


def test_ssh_software_needs_the_end_of_the_line() -> None:
    banner = b"SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n"
    assert ssh_software(banner) == "SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13"
    assert ssh_software(b"SSH-2.0-dropbear_2022.83\n") == "SSH-2.0-dropbear_2022.83"
    assert ssh_software(banner[:-2]) == ""
    assert ssh_software(b"SSH-2.0-" + b"x" * 300 + b"\r\n") == ""
