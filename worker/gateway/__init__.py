"""The HTTP gateway (``outplan-worker gateway``): the tutorial's REST calls, each turned into one RPC.

Modules: ``settings`` (``OUTPLAN_*`` of the gateway), ``auth`` (JWT verification and minting),
``broker`` (one AMQP connection, direct reply-to, reconnecting), ``routes`` (HTTP to command and
reply to HTTP), ``openapi`` (the OpenAPI 3.1 document, from the ``contracts`` models), ``metrics``,
``app`` (the Starlette application and the process's lifespan). Needs the ``gateway`` extra
(PyJWT); Starlette and uvicorn come with the worker.
"""
