"""The one e-mail address check (alerts): what people type passes, the rest says why."""

from __future__ import annotations

import pytest

from p2pbak.addresses import address_problem, checked
from p2pbak.errors import P2pbakError


@pytest.mark.parametrize("good", ["ann@example.org", "ann+backup@mail.example.co.uk",
                                  "o'neil@x-y.example", "a.b.c@d.io"])
def test_addresses_people_type_pass(good: str) -> None:
    assert address_problem(good) is None and checked(good) == good


@pytest.mark.parametrize("bad", ["ann", "a@b", "@example.org", "ann@", "a..b@example.org",
                                 ".a@example.org", "a b@example.org", "a@b@example.org",
                                 "x@-a.org", "x@a.org.", "x@1.2.3.4", "x@exa_mple.org",
                                 "x" * 65 + "@example.org", "a@" + "b" * 250 + ".org",
                                 "ann@example.org\n"])
def test_other_text_is_one_line_saying_why(bad: str) -> None:
    assert address_problem(bad)
    with pytest.raises(P2pbakError, match="is not an e-mail address") as err:
        checked(bad)
    assert "\n" not in str(err.value).replace(repr(bad), "")
