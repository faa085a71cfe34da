"""Object names: what ``ValidateObjectMeta`` checks of ``metadata.name`` when an object is created.

A Namespace's name must be an RFC 1123 label (``NameIsDNSLabel``, at most 63 characters);
every other kind's, custom resources' included, an RFC 1123 subdomain (``NameIsDNSSubdomain``,
at most 253), and so must a ``generateName`` prefix, a trailing ``-`` masked as
``maskTrailingDash`` masks it (apimachinery ``pkg/api/validation/generic.go``). A name that is
not is 422 Invalid, one cause per broken rule, worded as apimachinery's
``pkg/util/validation`` words them (``RegexError``'s examples included, with its double
space before "or").
"""

from __future__ import annotations

import re

from listwatch.testing._status import FieldError

_LABEL = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN = _LABEL + r"(\." + _LABEL + ")*"
_RULES = {
    # kind -> (max length, pattern, what it must be, examples)
    "Namespace": (
        63,
        _LABEL,
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
        "'-', and must start and end with an alphanumeric character",
        ("my-name", "123-abc"),
    ),
    "": (
        253,
        _SUBDOMAIN,
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
        "'-' or '.', and must start and end with an alphanumeric character",
        ("example.com",),
    ),
}


def name_errors(kind: str, name: str, generate_name: str | None) -> list[FieldError]:
    """The validation errors of an object's ``generateName`` and ``name``, in that order."""
    errors = []
    if generate_name:
        masked = len(generate_name) > 1 and generate_name.endswith("-")
        prefix = generate_name[:-2] + "a" if masked else generate_name  # sic: two off, one on
        errors += _errors(kind, "metadata.generateName", prefix, shown=generate_name)
    return errors + _errors(kind, "metadata.name", name, shown=name)


def _errors(kind: str, path: str, value: str, *, shown: str) -> list[FieldError]:
    limit, pattern, must, examples = _RULES.get(kind, _RULES[""])
    problems = []
    if len(value) > limit:
        problems.append(f"must be no more than {limit} characters")
    if not re.fullmatch(pattern, value):
        quoted = "".join(
            (" or " if i else "") + f"'{example}', " for i, example in enumerate(examples)
        )
        problems.append(f"{must} (e.g. {quoted}regex used for validation is '{pattern}')")
    return [FieldError.invalid(path, shown, problem) for problem in problems]
