"""Users, API tokens and roles (viewer < editor < approver < admin).

Public API: :class:`AuthService` (users, tokens, ``authenticate``), :class:`Role`,
:func:`role_allows`, and the models :class:`User`, :class:`ApiToken`, :class:`NewToken`.
"""

from ._service import ApiToken, AuthService, NewToken, Role, User, role_allows

__all__ = ["ApiToken", "AuthService", "NewToken", "Role", "User", "role_allows"]
