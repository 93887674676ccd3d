"""The live router: serves a deployment (several versions of one model behind one endpoint)
and carries out its rollout strategy.

Public API: :class:`RouterState` (the serving state of a deployment: one arm per version,
the arm chosen per request, shadows, feedback credited to arms, the background control
loop) with :class:`RouterOptions`; :func:`create_router_app` (the model server's app around
it) and :func:`serve_deployment` (uvicorn, ``shipyard deployments serve``); the per-request
choice :class:`ArmChooser` → :class:`Route` with the stable :func:`bucket` of a routing key;
the control decision :func:`decide` → :class:`Action`; and the A/B analysis
:func:`analyze_deployment` → :class:`ArmAnalysis`.
"""

from ._analyze import ArmAnalysis, ArmSummary, analyze_deployment
from ._app import create_router_app, serve_deployment
from ._control import Action, decide
from ._router import RouterOptions, RouterState
from ._strategies import ArmChooser, Route, bucket

__all__ = [
    "Action",
    "ArmAnalysis",
    "ArmChooser",
    "ArmSummary",
    "Route",
    "RouterOptions",
    "RouterState",
    "analyze_deployment",
    "bucket",
    "create_router_app",
    "decide",
    "serve_deployment",
]
