"""MustCheck gateway: the server side of the must-check credit lookup.

A check flows one way through one module per step:
authentication (``callers``) → subject validation (``subjects``) → list lookup
(``store``) → measure selection and outcome (``evaluation``) → masking
(``masking``) → answer (``service``).
"""

__version__ = "0.1.0"
