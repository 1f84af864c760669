"""The web dashboard of ``jfr gui``: pages and a JSON API over the queue database.

Nothing here is imported by the command line's parser, the listing commands or
the runner: Starlette, uvicorn and jinja2 come with the optional ``gui`` extra
(``pip install 'jfr[gui]'``) and are imported only when ``jfr gui`` runs.

Modules
-------
auth
    The token, the session cookie and the cross-site checks, as ASGI middleware.
queries
    What the pages show, read from the queue database (pages of jobs and flows,
    counts, the graph of a flow, the report).
jobview
    Everything about one job: its document, inputs, output and run folder.
actions
    The buttons: the same functions, state rules and messages as ``jfr job ...``.
app
    The Starlette application: routes, templates, one SQLite connection per
    thread (one MongoDB client for all).
server
    The listening socket and uvicorn, stopped cleanly on Ctrl-C or SIGTERM.
"""
