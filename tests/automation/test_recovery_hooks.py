"""The lease holder continues runs that need a process and have none."""

from __future__ import annotations

import asyncio

from haloterm.automation.service import Automation
from haloterm.models import ExecutionStatus
from haloterm.services import Services
from tests.automation.conftest import AddRunbook

GATED = """
name: gated
steps:
  - id: ok
    action: approval
    with: {approvers: ["role:lead"], message: "Go?"}
  - id: after
    action: shell
    with: {command: "echo after"}
"""


async def test_a_decision_made_while_no_process_waits_is_carried_out(
    svc: Services, auto: Automation, add_runbook: AddRunbook
) -> None:
    add_runbook(GATED)
    execution_id = await svc.engine.start("gated", {}, operator="alice")
    await svc.engine.wait_until(execution_id, {ExecutionStatus.WAITING})
    await svc.engine.shutdown(detach=True)  # the console that started it closes
    svc.store.decide_approval(
        execution_id, "ok", actor="bob", decision="approved", roles={"lead"}
    )
    assert execution_id not in svc.engine.active

    await auto.step(force=True)
    assert execution_id in svc.engine.active
    status = await asyncio.wait_for(svc.engine.wait(execution_id), 20)
    assert status is ExecutionStatus.SUCCEEDED
    texts = [line.text for line in svc.store.get_logs(execution_id)]
    assert "after" in texts
