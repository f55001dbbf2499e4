"""1001 Stories platform: `pulumi up` entry point."""

import pulumi

from components.program import build
from model.loading import ConfigError

try:
    outputs = build()
except ConfigError as error:
    # A user's mistake: one clear message, no traceback, nothing registered.
    raise pulumi.RunError(str(error)) from None

for name, value in outputs.items():
    pulumi.export(name, value)
