"""The BlueST console: reassembling chunked answers and reading the STM32 UID."""

from __future__ import annotations

import pytest

from mapper.bluest import ConsoleLineReader, Stm32Uid, parse_uid_answer


def test_line_split_across_20_byte_notifications() -> None:
    answer = b"0123456789ABCDEF01234567_482\r\n"
    reader = ConsoleLineReader()
    assert reader.feed(answer[:20]) == []
    assert reader.feed(answer[20:]) == ["0123456789ABCDEF01234567_482"]


def test_several_lines_in_one_chunk_and_a_partial_tail() -> None:
    reader = ConsoleLineReader()
    assert reader.feed(b"a\nb\nc") == ["a", "b"]
    assert reader.feed(b"\n") == ["c"]


def test_uid_with_mcu_suffix() -> None:
    assert parse_uid_answer("0039001d5632500620373834_482\n") == Stm32Uid(
        "0039001D5632500620373834", 0x482
    )


def test_uid_without_suffix() -> None:
    assert parse_uid_answer("0039001D5632500620373834") == Stm32Uid(
        "0039001D5632500620373834", None
    )


@pytest.mark.parametrize("line", ["", "uid", "0039001D56325006203738", "Command not valid"])
def test_not_a_uid(line: str) -> None:
    with pytest.raises(ValueError, match="not an STM32 UID"):
        parse_uid_answer(line)
