"""Whether the caller still belongs to the token's workspace.

An access token outlives a removal from the workspace by up to its lifetime (stateless tokens: nothing
revokes one early). Chat content is guarded by chat membership, which a removal takes away at once; what
is open to every member of a workspace (its people, its public channels, presence, uploads, a new
session, the event stream) checks the workspace membership itself, through this one rule.
"""

from __future__ import annotations

from fechatter_core.db.sql import Connection, Sql
from fechatter_core.errors import forbidden
from fechatter_core.security import AccessClaims

_ROLE = Sql("SELECT role FROM workspace_members WHERE workspace_id = :workspace_id AND user_id = :user_id")


async def workspace_role(conn: Connection, workspace_id: int, user_id: int) -> str | None:
    """The user's role in the workspace, or None when they are not (or no longer) a member."""
    return await _ROLE.scalar(conn, workspace_id=workspace_id, user_id=user_id)


async def require_workspace_member(conn: Connection, caller: AccessClaims) -> str:
    """The caller's role; 403 when the token outlived their membership."""
    role = await workspace_role(conn, caller.workspace_id, caller.user_id)
    if role is None:
        raise forbidden("You are no longer a member of this workspace")
    return str(role)
