"""A setting's value from its command-line text (`--param METHOD.KEY=VALUE`, `zoo build --finetune KEY=VALUE`),
parsed by the type its field declares: one parser, so both options read `true`, `3`, `1e-3` alike."""

from __future__ import annotations

import typing
from typing import Any


def parse_setting(hint: Any, text: str) -> Any:
    """`text` as a value of type `hint`: one of a Literal's choices, a bool (true/false/1/0), or `hint(text)`
    (int, float, str, ...). ValueError saying what it is not (e.g. "not a valid int") where it is none."""
    if typing.get_origin(hint) is typing.Literal:
        choices = {str(choice): choice for choice in typing.get_args(hint)}
        if text not in choices:
            raise ValueError(f"not one of {', '.join(choices)}")
        return choices[text]
    try:
        if hint is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "1")
        return hint(text)
    except (TypeError, ValueError):
        raise ValueError(f"not a valid {getattr(hint, '__name__', hint)}") from None
