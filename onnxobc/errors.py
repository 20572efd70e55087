"""Errors about options, worded for whoever reads them: the library names an option by its field
(`sparsity`), the command line by its flag (`--sparsity`)."""

from __future__ import annotations

import re

_NAME = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
# fields whose library name reads better in another form
LIBRARY_NAMES = {"asym": "symmetric=False"}


class OptionError(ValueError):
    """A bad option or combination. The message is a template in which {field} stands for an
    option: str() names the fields as the library does, `worded(names)` with the caller's names
    (the CLI passes its flags)."""

    def __init__(self, template: str):
        self.template = template
        super().__init__(self.worded({}))

    def worded(self, names: dict) -> str:
        return _NAME.sub(lambda m: names.get(m[1], LIBRARY_NAMES.get(m[1], m[1])), self.template)

    def __str__(self) -> str:
        return self.worded({})
