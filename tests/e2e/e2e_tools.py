"""A tool module the e2e worker loads (S2S_TOOLS_MODULE=tests.e2e.e2e_tools).

Its result carries a code that appears nowhere else, so a test can follow it from the
tool through the model's reply to the agent's transcript. Every call is appended to the
file named by E2E_TOOL_LOG, so the test also sees that it ran in the job process, once.
"""

from __future__ import annotations

import json
import os
import time

from agent.tools import function_tool

ORDER_CODE = "ZEBRA-42"
TOOL_LOG_ENV = "E2E_TOOL_LOG"


@function_tool
def lookup_order(order_id: str) -> dict[str, str]:
    """Look up where an order is.

    Args:
        order_id: The order number, e.g. "A-17".
    """
    path = os.environ.get(TOOL_LOG_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as log:
            log.write(json.dumps({"order_id": order_id, "pid": os.getpid(), "t": time.time()}))
            log.write("\n")
    return {"order_id": order_id, "status": "shipped", "tracking": ORDER_CODE}
