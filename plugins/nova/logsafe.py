"""Keep AWS session tokens out of the SDK's DEBUG logs.

smithy-python logs whole signed requests at DEBUG ("Sending request …"), headers included,
so a temporary credential's `X-Amz-Security-Token` would reach any DEBUG log sink. A filter
on that logger rewrites the value before any handler sees it. Filters run only for records
that pass the level check, so there is no cost unless DEBUG is on for that logger.
"""

from __future__ import annotations

import logging
import re

_SDK_LOGGERS = ("smithy_core.aio.client",)
_TOKEN = re.compile(r"(x-amz-security-token['\"]?\s*[:=,]?\s*(?:value=)?\[?\s*['\"])[^'\"]+", re.I)


class RedactSessionTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        if "security-token" not in message.lower():
            return True
        record.msg = _TOKEN.sub(r"\1***", message)
        record.args = None
        return True


def install() -> None:
    """Attach the filter to the SDK loggers once."""
    for name in _SDK_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactSessionTokens) for f in logger.filters):
            logger.addFilter(RedactSessionTokens())
